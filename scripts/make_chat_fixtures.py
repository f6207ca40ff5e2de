#!/usr/bin/python3
"""A tiny chat model (ChatML template, SmolLM2-Instruct's special tokens), a second chat-template variant
(Meta-Llama-3-Instruct's), hand-written conversational and prompt/completion data, and goldens for
supervised fine-tuning: templates rendered with Jinja2 exactly as transformers renders them, the
token ids and loss masks that webtune must produce, and a padded training batch with its PyTorch loss
and LoRA gradients (tiny_models.py's plain-torch Llama). Fixed seeds: reruns give identical bytes.

Writes under packages/model/test/fixtures/:
  models/tiny-chat/                 Hugging Face layout: config.json (tiny-llama's, vocab 518, bos/eos =
                                    <|im_start|>/<|im_end|>), generation_config.json, tokenizer.json
                                    (tiny-llama's BPE, ids 0..511 unchanged, + 6 special tokens 512..517),
                                    tokenizer_config.json (SmolLM2-135M-Instruct's fields and ChatML
                                    chat_template), model.safetensors (F32, seed 1004)
  goldens/chat-llama3/tokenizer_config.json   the same tokenizer with Llama-3's bos/eos, no pad, no chat_template
  goldens/chat-llama3/chat_template.jinja     Meta-Llama-3-8B-Instruct's template (tests swap these two files in)
  goldens/chat-data.jsonl           16 conversations {"messages": [{"role", "content"}, ...]}
  goldens/chat-qa.jsonl             8 prompt/completion pairs {"prompt", "completion"}
  goldens/chat.json                 renders, pieces, ids and masks for both templates; prompt/completion ids
                                    and masks; a [4, 64] batch with base and LoRA loss, per-row losses and
                                    the gradient of every lora_A / lora_B

Needs models/tiny-llama/ (make_tiny_models.py runs first in make-fixtures.sh).

Run: cd scripts && /usr/bin/python3 make_chat_fixtures.py
"""
import json
import os

import jinja2
import jinja2.exceptions
import jinja2.ext
import jinja2.sandbox
import torch
import torch.nn.functional as F

from fixture_io import ROOT, b64, write_fixture
from make_tiny_models import HF_VERSION, dump_json, init_params, llama_shapes, lora_tensors_and_grads, make_adapters, write_model_dir
from tiny_models import ByteLevelBPE, CausalLM, lora_scale, peft_key, tokenizer_json

FIX = "packages/model/test/fixtures"
GEN = "scripts/make_chat_fixtures.py"
EOT = "<|endoftext|>"
# id order: <|endoftext|> keeps tiny-llama's 511; the rest follow.
CHAT_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                 "<|eot_id|>"]
VOCAB = 512 + len(CHAT_SPECIALS)

# HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json "chat_template", verbatim. In the real JSON file
# the `\n` inside the Jinja string literals are JSON escapes, i.e. the decoded template holds newline
# characters there; json.dump writes this Python string back the same way.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# meta-llama/Meta-Llama-3-8B-Instruct's template, written to chat_template.jinja as one line: here the `\n`
# are two characters, backslash and n, i.e. Jinja escape sequences inside its string literals (rendered as
# newlines by Jinja). So the two variants cover both spellings. No trailing newline (transformers'
# save_pretrained writes the template string as is).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# ----------------------------------------------------------------------------- data (hand-written)

CONVERSATIONS = [
    # 0..3 carry a system message: ChatML's default system prompt alone is ~50 tokens with this 512-merge
    # vocabulary, so only these fit the S = 64 batch rows with learned tokens left in them.
    # 0: system + single turn
    [("system", "You are Fern."), ("user", "When do I water tomatoes?"), ("assistant", "Early, at the roots.")],
    # 1: system + two assistant turns (cut inside the second answer in the S = 64 batch)
    [("system", "You are Fern."), ("user", "Hi!"), ("assistant", "What do you grow?"), ("user", "Peas."),
     ("assistant", "Peas like cool weather and a trellis.")],
    # 2: spaces around the system and user turns and an inner newline (Llama-3's `| trim` strips the outer ones)
    [("system", "  You are Fern.  "), ("user", "  How deep is garlic planted?  "),
     ("assistant", "Two inches,\npointy end up.")],
    # 3: system + single turn
    [("system", "You are Fern. Be brief."), ("user", "Can mint grow in a pot?"),
     ("assistant", "Yes, a pot keeps it tidy.")],
    # 4..15: no system message (ChatML inserts its default one)
    [("user", "Who are you?"), ("assistant", "I am Fern. I help with gardens.")],
    # 5: two assistant turns
    [("user", "My basil is wilting."), ("assistant", "Is the soil dry?"), ("user", "Yes, very."),
     ("assistant", "Water it well and give it shade.")],
    [("user", "What is compost?"), ("assistant", "Rotted plant scraps that feed the soil.")],
    # 7: non-ASCII (é, em dash)
    [("user", "Is a café au lait dahlia hard to grow?"), ("assistant", "Not really — give it sun and a stake.")],
    # 8: two assistant turns
    [("user", "Should I prune roses?"), ("assistant", "Yes, in late winter."), ("user", "How much?"),
     ("assistant", "Cut back about a third.")],
    [("user", "Why are my leaves yellow?"), ("assistant", "Often too much water.")],
    # 10: trailing newline in the user turn, spaces around the answer
    [("user", "Do slugs eat lettuce?\n"), ("assistant", " Yes. Beer traps help. ")],
    [("user", "When do I plant bulbs?"), ("assistant", "In autumn, before the frost.")],
    # 12: two assistant turns
    [("user", "What should I grow first?"), ("assistant", "Try radishes."), ("user", "Why?"),
     ("assistant", "They sprout in days.")],
    [("user", "Do sunflowers need full sun?"), ("assistant", "Yes, six hours a day.")],
    [("user", "How do I keep cats out of beds?"), ("assistant", "Lay twigs on the soil.")],
    [("user", "Thank you, Fern."), ("assistant", "Happy gardening!")],
]
QA = [
    ("Question: What do tomatoes need?\nAnswer:", " Full sun and steady water."),
    ("Question: When do I plant garlic?\nAnswer:", " In autumn, before frost."),
    ("Question: What eats my lettuce?\nAnswer:", " Usually slugs or snails."),
    ("Question: How often do I water a cactus?\nAnswer:", " Every two or three weeks."),
    ("Question: What is mulch?\nAnswer:", " A layer that keeps the soil moist."),
    ("Question: Do bees like lavender?\nAnswer:", " Yes, they love it."),
    ("Question: Can basil grow indoors?\nAnswer:", " Yes, on a sunny sill."),
    ("Question: Who is Fern?\nAnswer:", " A gardening assistant."),
]

SEQ = 64
BATCH_ROWS = [0, 1, 2, 3]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 4, 8.0


def write_jsonl(rel, rows):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {rel} ({os.path.getsize(path)} bytes)")


def read_jsonl(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- model folder

def added_token(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def chat_tokenizer_config(vocab, bos, eos, pad, chat_template):
    """SmolLM2-135M-Instruct's tokenizer_config.json fields (model_max_length cut to 256). chat_template None:
    no key (the Llama-3 variant keeps its template in chat_template.jinja, as transformers >= 4.47 saves it)."""
    specials = [EOT] + CHAT_SPECIALS
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(vocab[s]): added_token(s) for s in specials},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": bos,
    }
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    cfg.update({
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "errors": "replace",
        "model_max_length": 256,
        "pad_token": pad,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": EOT,
    })
    return cfg


def build_tokenizer():
    """tiny-llama's vocab and merges (ids 0..511 unchanged) + CHAT_SPECIALS at 512..517. As tokenizer_json()
    does for <|endoftext|>, every special token is both in model.vocab and in added_tokens (special: true,
    normalized: false), added_tokens sorted by id."""
    with open(os.path.join(ROOT, FIX, "models/tiny-llama/tokenizer.json"), encoding="utf-8") as f:
        base = json.load(f)
    vocab = dict(base["model"]["vocab"])
    merges = base["model"]["merges"]
    assert sorted(vocab.values()) == list(range(512)) and vocab[EOT] == 511
    for s in CHAT_SPECIALS:
        vocab[s] = len(vocab)
    assert len(vocab) == VOCAB
    tj = tokenizer_json(vocab, merges, EOT)
    tj["added_tokens"] = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": False, "special": True} for s in [EOT] + CHAT_SPECIALS]
    tok = ByteLevelBPE(vocab, merges, {s: vocab[s] for s in [EOT] + CHAT_SPECIALS})
    return vocab, tj, tok


# ----------------------------------------------------------------------------- Jinja2, as transformers renders

def compile_template(source):
    """transformers src/transformers/utils/chat_template_utils.py `_compile_jinja_template`: an
    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols extension and a
    `raise_exception` global. (transformers also registers its AssistantTracker extension for
    {% generation %}, a `tojson` filter and a `strftime_now` global; neither template here uses them.)"""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


class ChatTemplate:
    """One tokenizer_config variant. render() follows `render_jinja_template` / apply_chat_template:
    template.render(messages=..., tools=None, documents=None, add_generation_prompt=..., **special_tokens_map),
    where special_tokens_map holds only the special tokens that are set: a null pad_token is omitted (Jinja
    then sees it undefined), not passed as None."""

    def __init__(self, name, tok_cfg, source, vocab):
        self.name = name
        self.template = compile_template(source)
        self.specials = {k: tok_cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")
                         if tok_cfg.get(k) is not None}
        self.bos, self.eos, self.pad = tok_cfg["bos_token"], tok_cfg["eos_token"], tok_cfg["pad_token"]
        self.bos_id, self.eos_id = vocab[self.bos], vocab[self.eos]
        # id that pads training rows: pad_token's, or eos's when pad_token is null
        self.pad_id = vocab[self.pad] if self.pad is not None else self.eos_id

    def render(self, messages, add_generation_prompt):
        return self.template.render(messages=messages, tools=None, documents=None,
                                    add_generation_prompt=add_generation_prompt, **self.specials)


# ----------------------------------------------------------------------------- the tokenization spec

def tokenize_conversation(chat, tok, messages):
    """THE SPEC webtune implements for conversations (`messages`):
      full = render(messages, add_generation_prompt=False)
      for every assistant message i:
        P_i = render(messages[:i], add_generation_prompt=True)     (the prompt generation would see)
        F_i = render(messages[:i + 1], add_generation_prompt=False)
        require F_i.startswith(P_i) and full.startswith(F_i)
      cut points = sorted {0, len(full)} U {len(P_i), len(F_i)}; the text between consecutive cut points is a
      piece; a piece is learned iff it lies inside some [len(P_i), len(F_i)).
      ids  = concatenation of tok.encode(piece) (special tokens are matched verbatim; the tokenizer adds no
             BOS/EOS: the template writes them)
      mask = 1 for every id of a learned piece, else 0.
    Encoding piece by piece makes the prompt's ids equal to what generation encodes from P_i."""
    full = chat.render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        p = chat.render(messages[:i], True)
        f = chat.render(messages[:i + 1], False)
        assert f.startswith(p), (chat.name, messages, i)
        assert full.startswith(f), (chat.name, messages, i)
        spans.append((len(p), len(f)))
    cuts = sorted({0, len(full)} | {c for span in spans for c in span})
    pieces, ids, mask = [], [], []
    for a, b in zip(cuts, cuts[1:]):
        learned = any(s <= a and b <= e for s, e in spans)
        text = full[a:b]
        enc = tok.encode(text)
        pieces.append({"text": text, "learned": learned})
        ids += enc
        mask += [1 if learned else 0] * len(enc)
    assert "".join(p["text"] for p in pieces) == full and tok.decode(ids) == full
    return full, pieces, ids, mask


def tokenize_prompt_completion(tok, eos_id, prompt, completion):
    """THE SPEC for prompt/completion pairs (plain strings, no template), TRL's SFTTrainer
    (trl/trainer/sft_trainer.py: `add_eos` appends eos_token to the completion text, `tokenize` encodes
    prompt and prompt + completion and builds completion_mask):
      p  = encode(prompt);  pc = encode(prompt + completion) + [eos_id]
      require pc[:len(p)] == p;  mask = [0] * len(p) + [1] * (len(pc) - len(p))"""
    p = tok.encode(prompt)
    pc = tok.encode(prompt + completion) + [eos_id]
    assert pc[:len(p)] == p, (prompt, completion)
    return pc, [0] * len(p) + [1] * (len(pc) - len(p))


def training_row(ids, mask, seq, pad_id):
    """THE SPEC for a training row of length `seq`: keep the first seq + 1 tokens (truncation keeps the start),
    m = kept length; inputs = ids[0 : m-1]; labels = ids[1 : m] where mask[1 : m] == 1, else -100 (labels are
    already shifted: position j predicts labels[j]); pad inputs with pad_id and labels with -100 to seq.
    Returns (inputs, labels, real length m - 1)."""
    m = min(len(ids), seq + 1)
    inputs = ids[:m - 1]
    labels = [t if k == 1 else -100 for t, k in zip(ids[1:m], mask[1:m])]
    n = len(inputs)
    return inputs + [pad_id] * (seq - n), labels + [-100] * (seq - n), n


def shifted_ce(logits, labels):
    """Mean cross entropy of logits[b, j] vs labels[b, j] over labels != -100; NO further shift (the labels of
    training_row are already shifted, unlike tiny_models.hf_causal_lm_loss which shifts as HF does)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                           reduction="mean")


# ----------------------------------------------------------------------------- main

def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)

    # --- model folder
    vocab, tj, tok = build_tokenizer()
    with open(os.path.join(ROOT, FIX, "models/tiny-llama/config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.update({"bos_token_id": vocab["<|im_start|>"], "eos_token_id": vocab["<|im_end|>"],
                "tie_word_embeddings": True, "vocab_size": VOCAB})
    assert cfg["transformers_version"] == HF_VERSION
    chatml_cfg = chat_tokenizer_config(vocab, "<|im_start|>", "<|im_end|>", "<|im_end|>", CHATML_TEMPLATE)
    shapes = llama_shapes(cfg, qkv_bias=False, tied=True)
    params = init_params(shapes, seed=1004)
    stored = [(n, params[n]) for n, _, _ in shapes]
    write_model_dir("tiny-chat", cfg, stored, tj, chatml_cfg)

    # --- Llama-3 variant files
    llama3_dir = os.path.join(ROOT, FIX, "goldens/chat-llama3")
    os.makedirs(llama3_dir, exist_ok=True)
    dump_json(os.path.join(llama3_dir, "tokenizer_config.json"),
              chat_tokenizer_config(vocab, "<|begin_of_text|>", "<|eot_id|>", None, None))
    with open(os.path.join(llama3_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(LLAMA3_TEMPLATE)
    print(f"wrote {FIX}/goldens/chat-llama3/")

    # --- data
    write_jsonl(f"{FIX}/goldens/chat-data.jsonl",
                [{"messages": [{"role": r, "content": c} for r, c in conv]} for conv in CONVERSATIONS])
    write_jsonl(f"{FIX}/goldens/chat-qa.jsonl", [{"prompt": p, "completion": c} for p, c in QA])

    # --- everything below reads the written files back, as the TypeScript side will
    conversations = [row["messages"] for row in read_jsonl(f"{FIX}/goldens/chat-data.jsonl")]
    qa = read_jsonl(f"{FIX}/goldens/chat-qa.jsonl")
    with open(os.path.join(ROOT, FIX, "models/tiny-chat/tokenizer_config.json"), encoding="utf-8") as f:
        chatml_cfg = json.load(f)
    with open(os.path.join(llama3_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        llama3_cfg = json.load(f)
    with open(os.path.join(llama3_dir, "chat_template.jinja"), encoding="utf-8") as f:
        llama3_source = f.read()
    assert chatml_cfg["chat_template"] == CHATML_TEMPLATE and "\\" not in CHATML_TEMPLATE
    assert llama3_source == LLAMA3_TEMPLATE and "\n" not in llama3_source and "chat_template" not in llama3_cfg
    chats = {"chatml": ChatTemplate("chatml", chatml_cfg, chatml_cfg["chat_template"], vocab),
             "llama3": ChatTemplate("llama3", llama3_cfg, llama3_source, vocab)}

    # sanity: both spellings of "\n" render as newlines; the expected strings are written out by hand
    hi = [{"role": "user", "content": " Hi "}]
    assert chats["chatml"].render(hi, True) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n")
    assert chats["llama3"].render(hi, True) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")

    templates, encoded = {}, {}
    for name, chat in chats.items():
        convs = []
        for messages in conversations:
            full, pieces, ids, mask = tokenize_conversation(chat, tok, messages)
            # For these two templates every cut point borders a special token, so pieces encode like the whole.
            assert ids == tok.encode(full), (name, full)
            convs.append({"rendered": full, "pieces": pieces, "ids": ids, "mask": mask})
        gen = []
        for k in range(4):
            messages = conversations[k]
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            text = chat.render(messages[:last], True)
            ids = tok.encode(text)
            assert convs[k]["ids"][:len(ids)] == ids and convs[k]["rendered"].startswith(text)
            gen.append({"conversation": k, "messages": last, "text": text, "ids": ids})
        templates[name] = {"bos": chat.bos, "bosId": chat.bos_id, "eos": chat.eos, "eosId": chat.eos_id,
                           "pad": chat.pad, "padId": chat.pad_id, "conversations": convs, "generationPrompt": gen}
        encoded[name] = convs
        lens = [len(c["ids"]) for c in convs]
        print(f"{name}: rendered lengths {lens}", flush=True)

    chatml = chats["chatml"]
    prompt_completion = []
    for row in qa:
        ids, mask = tokenize_prompt_completion(tok, chatml.eos_id, row["prompt"], row["completion"])
        prompt_completion.append({"ids": ids, "mask": mask})

    # --- batch: chatml, conversations 0..3, S = 64
    rows = [training_row(encoded["chatml"][k]["ids"], encoded["chatml"][k]["mask"], SEQ, chatml.pad_id)
            for k in BATCH_ROWS]
    input_ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    labels = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    lengths = [r[2] for r in rows]
    assert all((labels[b] != -100).any() for b in range(len(rows)))

    model = CausalLM(cfg, {n: t.float() for n, t in stored})
    with torch.no_grad():
        base_loss = shifted_ce(model.forward(input_ids), labels)

    adapters = make_adapters(model, TARGETS, RANK, seed=2004)
    scale = lora_scale(RANK, ALPHA, False)
    lp = {p: (a.clone().requires_grad_(), b.clone().requires_grad_()) for p, (a, b) in adapters.items()}
    lora = {p: (a, b, scale) for p, (a, b) in lp.items()}
    loss = shifted_ce(model.forward(input_ids, lora), labels)
    loss.backward()
    tensors, grads = lora_tensors_and_grads(lp)

    # Right padding + causal attention: real tokens never attend to pads, so each row alone (cut to its real
    # length, no padding) gives the same per-token losses; their token-weighted mean is the batch loss.
    frozen = {p: (a.detach(), b.detach(), scale) for p, (a, b) in lp.items()}
    row_losses, row_tokens = [], []
    with torch.no_grad():
        for b, n in enumerate(lengths):
            row_losses.append(float(shifted_ce(model.forward(input_ids[b:b + 1, :n], frozen), labels[b:b + 1, :n])))
            row_tokens.append(int((labels[b] != -100).sum()))
    weighted = sum(l * t for l, t in zip(row_losses, row_tokens)) / sum(row_tokens)
    assert abs(weighted - float(loss)) < 1e-6, (weighted, float(loss))

    payload = {
        "model": "tiny-chat",
        "note": "templates rendered with jinja2 as transformers' apply_chat_template does (null special tokens "
                "omitted); ids/mask per the piece rule of scripts/make_chat_fixtures.py; batch rows per "
                "training_row (labels ALREADY shifted: logits[b, j] predict labels[b, j]); loss = mean CE over "
                "labels != -100 with no further shift; no attention mask (right padding, causal); float32 "
                "plain-torch Llama (tiny_models.py)",
        "files": {"chatml": "models/tiny-chat/tokenizer_config.json",
                  "llama3": ["goldens/chat-llama3/tokenizer_config.json", "goldens/chat-llama3/chat_template.jinja"],
                  "conversations": "goldens/chat-data.jsonl", "promptCompletion": "goldens/chat-qa.jsonl"},
        "templates": templates,
        "promptCompletion": prompt_completion,
        "batch": {
            "template": "chatml",
            "conversations": BATCH_ROWS,
            "seqLen": SEQ,
            "inputIds": input_ids.tolist(),
            "labels": labels.tolist(),
            "lengths": lengths,
            "lora": {
                "name": f"r{RANK}-alpha{int(ALPHA)}",
                "config": {"r": RANK, "alpha": ALPHA, "dropout": 0.0, "useRslora": False, "targets": TARGETS,
                           "fanInFanOut": False, "scale": scale, "modules": list(lp)},
                "adapters": tensors,
                "loss": float(loss),
                "grads": grads,
                "rowLosses": row_losses,
                "rowTokens": row_tokens,
            },
        },
        "baseLoss": float(base_loss),
    }
    write_fixture(f"{FIX}/goldens/chat.json", GEN, payload)


if __name__ == "__main__":
    main()
