/** @webtune/trainer: the training loop, AdamW, schedules, data batching and the memory planner. */
export { Trainer, DEFAULT_TRAIN_CONFIG } from './trainer.js';
export type { TrainConfig, StepProgress, TrainResult } from './trainer.js';
export { AdamW, DEFAULT_ADAMW } from './optimizer.js';
export type { AdamWOptions } from './optimizer.js';
export { learningRateFactor } from './schedule.js';
export type { ScheduleKind, ScheduleOptions } from './schedule.js';
export { packTokens, tokenizeDocuments, batchFromWindows, BatchStream, IGNORE } from './data.js';
export type { DataCursor } from './data.js';
export { estimateTrainingMemory, checkMemoryPlan } from './planner.js';
export type { MemoryEstimate, MemoryPlanInput, PlanCheckOptions } from './planner.js';
