/**
 * Central-DP privacy accounting: the one place the coordinator calls the accountant of
 * '@webtune/federated' (RDP of the sampled Gaussian mechanism, Opacus' RDPAccountant). Each
 * aggregated central-DP round is one release with noise multiplier z (noise std z S / m on the
 * mean of m updates clipped to S) at the round's sampling rate q; epsilon at the round's delta is
 * recomputed over all such rounds after every one and stored on the round's row (rounds.dp_epsilon).
 */
import { RdpAccountant } from '@webtune/federated';

export interface DpRelease {
  noiseMultiplier: number;
  sampleRate: number;
}

/** Epsilon spent by these releases at `delta`, or null when the accountant refuses (logged; the round is still aggregated). */
export function centralEpsilon(releases: readonly DpRelease[], delta: number, log: (line: string) => void = () => {}): number | null {
  try {
    const accountant = new RdpAccountant();
    for (const r of releases) accountant.step({ noiseMultiplier: r.noiseMultiplier, sampleRate: r.sampleRate });
    return accountant.epsilon(delta).epsilon;
  } catch (error) {
    log(`privacy accounting failed: ${(error as Error).message}`);
    return null;
  }
}
