// Public library API of Stepwise.
export { LLM } from './llm.js';
export type { LoadOptions, ResolvedLoadOptions, GenerateParams, GenerateResult, CompletionResult, Prompt, Backend } from './llm.js';
export { Engine } from './engine/engine.js';
export type { EngineOptions, RequestStream } from './engine/engine.js';
export type { SamplingParams, RequestOutput, FinishReason, SchedulerOutput, ModelRunner, ModelRunnerOutput } from './engine/types.js';
export { DEFAULT_SAMPLING } from './engine/types.js';
export { loadModel } from './model/loaders/index.js';
export { DraftModelError } from './engine/spec/draft-vocabulary.js';
export type { SpeculativeConfig, SpeculativeMethod } from './engine/spec/speculative-config.js';
export { makeModel } from './model/make-model.js';
export type { ModelConfig } from './model/config.js';
export type { Tokenizer } from './model/tokenizer-types.js';
export type { ChatMessage, ChatRenderOptions } from './server/chat-template.js';
