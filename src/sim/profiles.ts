// Hardware and model profiles: the built-in ones from profiles.json (datasheet GPUs, well-known
// models) and calibrated ones from files written by `stepwise calibrate`. Every profile is checked
// field by field on the way in, so a typo in a hand-edited file is reported by name, not turned
// into NaN step times.
import { readFileSync } from 'node:fs';
import builtIn from './profiles.json' with { type: 'json' };
import type { HardwareProfile, ModelProfile } from './cost-model.js';

/** A profile that is missing, unknown or malformed. */
export class ProfileError extends Error {
  override name = 'ProfileError';
}

/** What `stepwise calibrate` writes: the machine's fitted profile and the model it was measured with. */
export interface CalibratedProfileFile {
  kind: 'stepwise-profile';
  version: 1;
  name: string;
  hardware: HardwareProfile;
  /** The model the machine was measured with (simulate uses it unless told another). */
  model: ModelProfile;
  /** Model file the profile was measured with (basename), for reports. */
  modelName?: string;
  /** How it was measured and how well the fit matches (free-form, for people). */
  calibration?: Record<string, unknown>;
}

const HW_REQUIRED = ['memoryGB', 'bandwidthGBs', 'peakTflops', 'bandwidthEfficiency', 'computeEfficiency', 'stepOverheadMs', 'perSeqOverheadUs', 'reservedGB'] as const;
const HW_OPTIONAL = ['perTokenUs', 'kvCacheGB', 'attentionGflops', 'kvBandwidthGBs', 'coldStepFactor', 'perPrefillRowUs', 'perPrefillSeqUs'] as const;
const MODEL_INTS = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'contextLength'] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks a hardware profile; `where` names it in errors (e.g. "hardware profile A100-80GB"). */
export function validateHardware(v: unknown, where: string): HardwareProfile {
  if (!isObject(v)) throw new ProfileError(`${where} must be an object`);
  for (const k of HW_REQUIRED) {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new ProfileError(`${where}: ${k} must be a number >= 0, got ${JSON.stringify(x)}`);
  }
  for (const k of HW_OPTIONAL) {
    const x = v[k];
    if (x !== undefined && (typeof x !== 'number' || !Number.isFinite(x) || x < 0)) throw new ProfileError(`${where}: ${k} must be a number >= 0 when given, got ${JSON.stringify(x)}`);
  }
  for (const k of ['bandwidthGBs', 'peakTflops', 'bandwidthEfficiency', 'computeEfficiency'] as const) {
    if ((v[k] as number) <= 0) throw new ProfileError(`${where}: ${k} must be greater than 0`);
  }
  if (v.attentionGflops === 0) throw new ProfileError(`${where}: attentionGflops must be greater than 0 when given`);
  if (v.coldStepFactor !== undefined && (v.coldStepFactor as number) < 1) throw new ProfileError(`${where}: coldStepFactor must be at least 1 when given, got ${v.coldStepFactor}`);
  if (v.kvBandwidthGBs === 0) throw new ProfileError(`${where}: kvBandwidthGBs must be greater than 0 when given`);
  checkCurve(v.rowCurve, 'rowCurve', where, false);
  checkCurve(v.prefillExcessCurve, 'prefillExcessCurve', where, true);
  checkCurve(v.kvReadCurve, 'kvReadCurve', where, true);
  const apf = v.afterPromptFactors;
  if (apf !== undefined && !(Array.isArray(apf) && apf.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 1))) {
    throw new ProfileError(`${where}: afterPromptFactors must be a list of numbers >= 1 when given, got ${JSON.stringify(apf).slice(0, 120)}`);
  }
  return v as unknown as HardwareProfile;
}

/** A [rows, ms] curve: rows increasing (from 1, or from 0 where `fromZero`), ms >= 0. */
function checkCurve(c: unknown, name: string, where: string, fromZero: boolean): void {
  if (c === undefined) return;
  const ok =
    Array.isArray(c) &&
    c.length >= 1 &&
    c.every((p, i) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'number' && typeof p[1] === 'number' && (fromZero ? p[0] >= 0 : p[0] > 0) && Number.isFinite(p[0]) && p[1] >= 0 && Number.isFinite(p[1]) && (i === 0 || p[0] > (c[i - 1] as number[])[0]));
  if (!ok) throw new ProfileError(`${where}: ${name} must be a list of [rows, ms] pairs with rows ${fromZero ? '>= 0' : '> 0'} increasing and ms >= 0, got ${JSON.stringify(c).slice(0, 120)}`);
}

export function validateModel(v: unknown, where: string): ModelProfile {
  if (!isObject(v)) throw new ProfileError(`${where} must be an object`);
  for (const k of MODEL_INTS) {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) throw new ProfileError(`${where}: ${k} must be an integer >= 1, got ${JSON.stringify(x)}`);
  }
  for (const k of ['weightBytes', 'kvBytes'] as const) {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw new ProfileError(`${where}: ${k} must be a number > 0, got ${JSON.stringify(x)}`);
  }
  if (typeof v.tiedEmbeddings !== 'boolean') throw new ProfileError(`${where}: tiedEmbeddings must be true or false`);
  if ((v.nHeads as number) % (v.nKvHeads as number) !== 0) throw new ProfileError(`${where}: nHeads (${v.nHeads}) must be a multiple of nKvHeads (${v.nKvHeads})`);
  if (v.headDim !== undefined && (typeof v.headDim !== 'number' || !Number.isSafeInteger(v.headDim) || v.headDim < 1)) {
    throw new ProfileError(`${where}: headDim must be an integer >= 1 when given`);
  }
  return v as unknown as ModelProfile;
}

function validateTable<T>(table: unknown, what: string, check: (v: unknown, where: string) => T): Record<string, T> {
  if (!isObject(table)) throw new ProfileError(`profiles.json: ${what} must be an object of named profiles`);
  const out: Record<string, T> = {};
  for (const [name, v] of Object.entries(table)) out[name] = check(v, `${what === 'hardware' ? 'hardware' : 'model'} profile ${name}`);
  return out;
}

/** Built-in hardware profiles (datasheet GPUs), by name. */
export const HARDWARE: Readonly<Record<string, HardwareProfile>> = validateTable(builtIn.hardware, 'hardware', validateHardware);
/** Built-in model profiles, by name. */
export const MODELS: Readonly<Record<string, ModelProfile>> = validateTable(builtIn.models, 'models', validateModel);

/** Looks a name up ignoring case (A100-80GB, a100-80gb); throws listing the known names. */
function lookup<T>(table: Readonly<Record<string, T>>, name: string, what: string): { name: string; profile: T } {
  const key = Object.keys(table).find((k) => k.toLowerCase() === name.toLowerCase());
  if (key === undefined) throw new ProfileError(`unknown ${what} '${name}': known ${what}s are ${Object.keys(table).join(', ')}`);
  return { name: key, profile: table[key] };
}

export function hardwareProfile(name: string): { name: string; profile: HardwareProfile } {
  return lookup(HARDWARE, name, 'hardware');
}

export function modelProfile(name: string): { name: string; profile: ModelProfile } {
  return lookup(MODELS, name, 'model');
}

/** Reads and checks a calibrated profile file. */
export function readProfileFile(path: string): CalibratedProfileFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ProfileError(`cannot read profile file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ProfileError(`profile file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseProfile(v, path);
}

export function parseProfile(v: unknown, path: string): CalibratedProfileFile {
  if (!isObject(v) || v.kind !== 'stepwise-profile') throw new ProfileError(`profile file ${path} is not a Stepwise profile (kind 'stepwise-profile'); write one with stepwise calibrate`);
  if (v.version !== 1) throw new ProfileError(`profile file ${path} has version ${JSON.stringify(v.version)}; this Stepwise reads version 1`);
  if (typeof v.name !== 'string' || v.name === '') throw new ProfileError(`profile file ${path}: name must be a non-empty string`);
  const hardware = validateHardware(v.hardware, `profile file ${path}: hardware`);
  const model = validateModel(v.model, `profile file ${path}: model`);
  return { ...(v as unknown as CalibratedProfileFile), hardware, model };
}
