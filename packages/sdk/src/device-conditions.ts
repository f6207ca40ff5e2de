/**
 * Battery and heat: what the device reports (the Battery Status API's charging state and level,
 * the Compute Pressure API's CPU pressure state), the policy a run follows (TrainRequest.power),
 * and the decision before each optimizer step: run, pace (an idle gap), or wait.
 *
 * The page observes and the session decides: navigator.getBattery() exists on pages only (not in
 * workers), so watchDeviceConditions() runs where the app is and forwards every change to the
 * session (TrainerSession.updateConditions), in its worker or inline. An app with its own signals
 * (a native shell, a test) calls updateConditions() itself.
 */
import { InvalidArgumentError } from '@webtune/errors';

/** The Compute Pressure API's states, lowest first. */
export type PressureState = 'nominal' | 'fair' | 'serious' | 'critical';

/** What the device reports; a field is absent where the browser has no such API. */
export interface DeviceConditions {
  battery?: { charging: boolean; /** 0..1 */ level: number };
  /** The CPU's pressure state (PressureObserver, source 'cpu'). */
  pressure?: PressureState;
}

/**
 * TrainRequest.power: both parts are off unless given. `battery: true` waits while the device is
 * discharging below 20% and continues once it charges (or the level rises above the threshold);
 * `thermal: true` paces at 'serious' pressure (an idle gap as long as the last step between steps)
 * and pauses at 'critical' until the pressure drops. Every wait begins with a checkpoint.
 */
export interface PowerPolicy {
  battery?: boolean | { /** Wait while discharging below this level (0..1). Default 0.2. */ minLevel?: number };
  thermal?: boolean | { /** Idle milliseconds between steps at 'serious' (default: the last step's duration). */ gapMs?: number };
}

export type PowerDecision =
  | { action: 'run' }
  | { action: 'pace'; gapMs: number }
  | { action: 'wait'; reason: 'battery' | 'thermal' };

/** Throws InvalidArgumentError for a policy that cannot work; returns its resolved settings. */
export function resolvePowerPolicy(policy: PowerPolicy | undefined): { battery: { minLevel: number } | undefined; thermal: { gapMs: number | undefined } | undefined } {
  if (policy === undefined) return { battery: undefined, thermal: undefined };
  if (typeof policy !== 'object' || policy === null) throw new InvalidArgumentError('power must be an object such as { battery: true, thermal: true }.');
  const battery = policy.battery === true ? { minLevel: 0.2 } : typeof policy.battery === 'object' && policy.battery !== null ? { minLevel: policy.battery.minLevel ?? 0.2 } : undefined;
  if (battery && !(battery.minLevel >= 0 && battery.minLevel <= 1)) throw new InvalidArgumentError(`power.battery.minLevel must be in [0, 1], got ${String(battery.minLevel)}.`);
  const thermal = policy.thermal === true ? { gapMs: undefined } : typeof policy.thermal === 'object' && policy.thermal !== null ? { gapMs: policy.thermal.gapMs } : undefined;
  if (thermal?.gapMs !== undefined && !(thermal.gapMs >= 0 && Number.isFinite(thermal.gapMs))) throw new InvalidArgumentError(`power.thermal.gapMs must be a finite number >= 0, got ${String(thermal.gapMs)}.`);
  return { battery, thermal };
}

/** Before a step: wait (battery low and discharging, or critical pressure), pace (serious pressure), or run. */
export function powerDecision(policy: ReturnType<typeof resolvePowerPolicy>, conditions: DeviceConditions, lastStepMs: number): PowerDecision {
  const b = conditions.battery;
  if (policy.battery && b && !b.charging && b.level < policy.battery.minLevel) return { action: 'wait', reason: 'battery' };
  if (policy.thermal && conditions.pressure === 'critical') return { action: 'wait', reason: 'thermal' };
  if (policy.thermal && conditions.pressure === 'serious') return { action: 'pace', gapMs: Math.round(policy.thermal.gapMs ?? Math.max(50, lastStepMs)) };
  return { action: 'run' };
}

/** Throws InvalidArgumentError unless `c` is a DeviceConditions (it crosses from the page). */
export function checkConditions(c: DeviceConditions): void {
  if (typeof c !== 'object' || c === null) throw new InvalidArgumentError('updateConditions needs { battery?, pressure? }.');
  if (c.battery !== undefined && (typeof c.battery !== 'object' || c.battery === null || typeof c.battery.charging !== 'boolean' || !(c.battery.level >= 0 && c.battery.level <= 1))) {
    throw new InvalidArgumentError('conditions.battery must be { charging: boolean, level: number in [0, 1] }.');
  }
  if (c.pressure !== undefined && !['nominal', 'fair', 'serious', 'critical'].includes(c.pressure)) {
    throw new InvalidArgumentError(`conditions.pressure must be 'nominal', 'fair', 'serious' or 'critical', got ${String(c.pressure)}.`);
  }
}

/** What watchDeviceConditions() found and how to stop it. */
export interface ConditionsWatch {
  /** Which APIs this browser has (and allowed). */
  battery: boolean;
  pressure: boolean;
  /** The latest conditions sent. */
  readonly current: DeviceConditions;
  /** Stops observing (the battery listeners and the pressure observer). */
  stop(): void;
}

interface BatteryLike extends EventTarget { charging: boolean; level: number }
interface PressureRecordLike { state: PressureState }
interface PressureObserverLike { observe(source: 'cpu', options?: { sampleInterval?: number }): Promise<void>; disconnect(): void }
type PressureObserverCtor = new (callback: (records: PressureRecordLike[]) => void) => PressureObserverLike;

/**
 * Observes the battery (navigator.getBattery) and CPU pressure (PressureObserver) where the
 * browser has them, and sends each change to `target.updateConditions` (a trainer from
 * createTrainer(), or a TrainerSession). Missing APIs are reported, not errors: Firefox and
 * Safari have neither, Chromium has both on pages (the pressure API also needs a secure context).
 * CPU pressure is load as much as heat: on a software GPU adapter (SwiftShader, lavapipe) the
 * training itself is the CPU's load, so a `thermal` policy paces it.
 *
 * @example
 * ```ts
 * const watch = await watchDeviceConditions(trainer);
 * await trainer.train({ steps: 200, power: { battery: true, thermal: true } }, (p) => show(p.paused));
 * watch.stop();
 * ```
 */
export async function watchDeviceConditions(
  /** Where changes go (a trainer); undefined to only watch (`onChange`, `current`), e.g. to show the state. */
  target: { updateConditions(c: DeviceConditions): unknown } | undefined,
  options: { onChange?: (c: DeviceConditions) => void; sampleIntervalMs?: number } = {},
): Promise<ConditionsWatch> {
  const g = globalThis as { navigator?: { getBattery?: () => Promise<BatteryLike> }; PressureObserver?: PressureObserverCtor };
  const current: DeviceConditions = {};
  const send = () => {
    const snapshot: DeviceConditions = { ...current, ...(current.battery ? { battery: { ...current.battery } } : {}) };
    options.onChange?.(snapshot);
    if (target) void Promise.resolve(target.updateConditions(snapshot)).catch(() => undefined);
  };
  const stops: Array<() => void> = [];
  let battery = false;
  if (typeof g.navigator?.getBattery === 'function') {
    try {
      const b = await g.navigator.getBattery();
      const read = () => {
        current.battery = { charging: b.charging, level: b.level };
        send();
      };
      for (const e of ['chargingchange', 'levelchange']) b.addEventListener(e, read);
      stops.push(() => ['chargingchange', 'levelchange'].forEach((e) => b.removeEventListener(e, read)));
      current.battery = { charging: b.charging, level: b.level };
      battery = true;
    } catch {
      // Blocked by permissions policy: no battery information.
    }
  }
  let pressure = false;
  if (typeof g.PressureObserver === 'function') {
    try {
      const observer = new g.PressureObserver((records) => {
        const last = records.at(-1);
        if (last && last.state !== current.pressure) {
          current.pressure = last.state;
          send();
        }
      });
      await observer.observe('cpu', { sampleInterval: options.sampleIntervalMs ?? 1000 });
      stops.push(() => observer.disconnect());
      pressure = true;
    } catch {
      // No CPU pressure source on this platform, or blocked by permissions policy.
    }
  }
  if (battery) send();
  return { battery, pressure, get current() { return current; }, stop: () => stops.splice(0).forEach((s) => s()) };
}
