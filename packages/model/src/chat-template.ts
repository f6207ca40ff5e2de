/**
 * Chat templates: the Jinja template a model ships (`chat_template.jinja`, or `chat_template` in
 * tokenizer_config.json) turns a conversation into the exact text the model was tuned on. It is
 * rendered with @huggingface/jinja, Hugging Face's JavaScript Jinja written for these templates
 * (transformers.js renders with it), with the variables transformers passes
 * (`utils/chat_template_utils.py`, render_jinja_template): `messages`, `add_generation_prompt`
 * and the special tokens' text (`bos_token`, `eos_token`, ...). Blocks are trimmed as transformers'
 * environment trims them (trim_blocks, lstrip_blocks).
 *
 * A template is code that runs on the user's device, as in transformers: it comes from the model
 * folder the app chose (or from the app). The Jinja runtime gives it no access to host objects,
 * but it has no time limit, so load models and templates only from sources the app trusts.
 */
import { Template } from '@huggingface/jinja';
import { ChatTemplateError, InvalidArgumentError } from '@webtune/errors';

/** Who speaks a turn of a conversation. */
export type ChatRole = 'system' | 'user' | 'assistant';

/** One turn of a conversation, in the format of the Hugging Face Hub's conversational data sets. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

/** The variables a template reads besides the messages: the special tokens' text. */
export type ChatTemplateVariables = Readonly<Partial<Record<'bos_token' | 'eos_token' | 'pad_token' | 'unk_token', string>>>;

// Stands in for an assistant's content to find what the template prints after it; no real text contains it.
const CONTENT_MARK = '\u0000webtune-assistant-content\u0000';

export class ChatTemplate {
  private constructor(
    private readonly template: Template,
    /** The template's Jinja text. */
    readonly text: string,
    /** Where it came from ('chat_template.jinja', 'tokenizer_config.json', or 'the app'). */
    readonly source: string,
    private readonly variables: ChatTemplateVariables,
  ) {}

  /** Parses `text`; a template that does not parse is a ChatTemplateError naming `source`. */
  static parse(text: string, variables: ChatTemplateVariables = {}, source = 'the app'): ChatTemplate {
    if (typeof text !== 'string' || text.trim() === '') throw new ChatTemplateError(`The chat template from ${source} is empty.`);
    let template: Template;
    try {
      template = new Template(text);
    } catch (cause) {
      throw new ChatTemplateError(`The chat template from ${source} is not valid Jinja: ${(cause as Error).message}`, { cause });
    }
    return new ChatTemplate(template, text, source, variables);
  }

  /**
   * The conversation as the model's text. `addGenerationPrompt` appends what opens an assistant
   * turn (for generation). Errors the template raises (`raise_exception`, e.g. "roles must
   * alternate") are ChatTemplateErrors.
   */
  render(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    try {
      return this.template.render({
        ...this.variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (cause) {
      throw new ChatTemplateError(`The chat template from ${this.source} failed on this conversation: ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * What the template prints right after an assistant's content (ChatML: '<|im_end|>\n',
   * Llama 3: '<|eot_id|>'), found by rendering a probe conversation. Generation stops at its first
   * special token.
   */
  endOfTurn(): string {
    const text = this.render([{ role: 'user', content: 'hi' }, { role: 'assistant', content: CONTENT_MARK }]);
    const at = text.lastIndexOf(CONTENT_MARK);
    return at < 0 ? '' : text.slice(at + CONTENT_MARK.length);
  }
}

/**
 * The template text a model folder ships: `chat_template.jinja` where present (the file newer
 * transformers versions save), else tokenizer_config.json's `chat_template`, which is a string or
 * a list of named templates (the one named "default" is used). Undefined when there is none.
 */
export function shippedChatTemplate(tokenizerConfig: Record<string, unknown> | undefined, jinjaFile?: string): { text: string; source: string } | undefined {
  if (jinjaFile !== undefined && jinjaFile.trim() !== '') return { text: jinjaFile, source: 'chat_template.jinja' };
  const value = tokenizerConfig?.['chat_template'];
  if (typeof value === 'string' && value.trim() !== '') return { text: value, source: 'tokenizer_config.json' };
  if (Array.isArray(value)) {
    const named = value.find((t): t is { name: string; template: string } => typeof t === 'object' && t !== null && (t as { name?: unknown }).name === 'default');
    if (named && typeof named.template === 'string') return { text: named.template, source: 'tokenizer_config.json ("default")' };
  }
  return undefined;
}

/**
 * The most messages one conversation may have. Each assistant turn is rendered again to find its
 * boundaries, so the work grows with the square of the turns; this bounds what one record costs.
 */
export const MAX_CHAT_MESSAGES = 512;

/** What is wrong with one message (`where` names it), or undefined if it is a valid ChatMessage. */
export function chatMessageProblem(message: unknown, where: string): string | undefined {
  if (typeof message !== 'object' || message === null) return `${where} is not an object with role and content`;
  const { role, content } = message as { role?: unknown; content?: unknown };
  if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
    return `${where} has role ${JSON.stringify(role)}; the roles are ${CHAT_ROLES.join(', ')}`;
  }
  if (typeof content !== 'string') return `${where} has no text content (content must be a string)`;
  return undefined;
}

/** Checks one message's shape; `where` names it in the InvalidArgumentError. */
export function checkChatMessage(message: unknown, where: string): asserts message is ChatMessage {
  const problem = chatMessageProblem(message, where);
  if (problem) throw new InvalidArgumentError(`${problem}.`);
}
