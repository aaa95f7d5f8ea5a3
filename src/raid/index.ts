// Public surface of the RAID layer; see docs/raid.md.
export { RaidArray } from './array.ts';
export type { DeviceState, DeviceStatus, RowRef, RowsInUse, Verify, Progress, CreateOptions, OpenOptions } from './array.ts';
export type { RaidLevel, LayoutSpec } from './layout.ts';
export { normalizeLayout } from './layout.ts';
export type { DeviceIO, OpenDevice } from './device.ts';
export { fileOpenDevice } from './device.ts';
export { gfMul, gfInv, gfDiv, gfPow2, computePQ, solveGroup } from './gf.ts';
export { faultyOpenDevice, openDeviceFromEnv, type FaultRule } from './faults.ts';
