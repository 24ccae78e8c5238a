"""The Python side of the benchmarks: builds the benchmark models (random
weights at real sizes) and measures transformers on them with the same
thread count as inferd. Prints one JSON line per measurement.

    reference.py make-models --out DIR
    reference.py generate --model DIR --threads N [--new-tokens 128] [--calls 8]
    reference.py classify --model DIR --threads N --payload FILE [--requests 200]
    reference.py summarize --model DIR --threads N --payload FILE
    reference.py transcribe --model DIR --threads N --audio FILE [--new-tokens 64] [--calls 8]
    reference.py detect --model DIR --threads N --image FILE [--threshold 0.5] [--calls 8]
    reference.py depth --model DIR --threads N --image FILE [--calls 4]
    reference.py segment --model DIR --threads N --image FILE [--calls 4]
    reference.py peak --threads N
    reference.py flops --model DIR --payload FILE [--batch 32]
"""
import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Where and in what dtype transformers runs (tests/benches/gpu.sh sets them).
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
DTYPE = os.environ.get("BENCH_DTYPE", "float32")


def on_device(model):
    """The model in DTYPE on DEVICE, for inference."""
    import torch
    return model.to(device=DEVICE, dtype=getattr(torch, DTYPE)).eval()


def synchronize():
    """Waits for the GPU's queued work, so that a timer reads its end."""
    import torch
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "target", "fixtures", "models")
PROMPT = "The quick brown fox jumps over the lazy dog"


# The models each benchmark of run.sh reads.
BENCH_MODELS = {
    "generate": ["gpt2-small"],
    "classify": ["distilbert-base-cls"],
    "summarize": ["distilbart-cnn-12-6"],
    "whisper": ["whisper-base"],
    "detect": ["detr-resnet-50"],
    "depth": ["glpn-kitti", "dpt-large"],
    "segment": ["segformer-b0", "mask2former-swin-tiny"],
    "speak": ["speecht5-tts", "speecht5-hifigan"],
    "arrivals": ["gpt2-small"],
    "summary-arrivals": ["distilbart-cnn-12-6"],
    "isolation": ["distilbert-base-cls"],
    "int8": ["distilbert-base-cls", "gpt2-small"],
    "startup": ["distilbert-base-cls", "gpt2-small", "distilbart-cnn-12-6", "whisper-base", "speecht5-tts",
                "speecht5-hifigan"],
    "shared": ["distilbert-base-cls", "gpt2-small", "distilbart-cnn-12-6", "whisper-base", "speecht5-tts",
               "speecht5-hifigan"],
}


def make_models(out, what="all"):
    """The benchmark models `what` needs (a run.sh benchmark, or all),
    each made once."""
    wanted = lambda path: what == "all" or os.path.basename(path) in BENCH_MODELS[what]
    import torch
    from transformers import (BartConfig, BartForConditionalGeneration, DistilBertConfig,
                              DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel, WhisperConfig,
                              WhisperForConditionalGeneration)

    torch.manual_seed(0)
    gpt2 = os.path.join(out, "gpt2-small")
    if wanted(gpt2) and not os.path.exists(os.path.join(gpt2, "model.safetensors")):
        # GPT-2 small's shape (124M parameters), random weights, with the
        # fixture's byte-level tokenizer (its ids are a subset of the vocabulary).
        cfg = GPT2Config(bos_token_id=999, eos_token_id=999)
        model = GPT2LMHeadModel(cfg)
        model.generation_config.pad_token_id = 999
        model.save_pretrained(gpt2, safe_serialization=True)
        for f in os.listdir(os.path.join(FIXTURES, "gpt2-gen")):
            if "token" in f or f in ("vocab.json", "merges.txt"):
                shutil.copy(os.path.join(FIXTURES, "gpt2-gen", f), gpt2)
        print(f"made {gpt2}", file=sys.stderr)
    cls = os.path.join(out, "distilbert-base-cls")
    if wanted(cls) and not os.path.exists(os.path.join(cls, "model.safetensors")):
        # distilbert-base's shape (66M parameters), with the fixture tokenizer.
        cfg = DistilBertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=2)
        model = DistilBertForSequenceClassification(cfg)
        model.save_pretrained(cls, safe_serialization=True)
        for f in os.listdir(os.path.join(FIXTURES, "distilbert-cls")):
            if "token" in f or f == "vocab.txt":
                shutil.copy(os.path.join(FIXTURES, "distilbert-cls", f), cls)
        print(f"made {cls}", file=sys.stderr)
    bart = os.path.join(out, "distilbart-cnn-12-6")
    if wanted(bart) and not os.path.exists(os.path.join(bart, "model.safetensors")):
        # sshleifer/distilbart-cnn-12-6's shape (306M parameters) and generation
        # settings, random weights, with the fixture summarization tokenizer.
        cfg = BartConfig(vocab_size=50264, d_model=1024, encoder_layers=12, decoder_layers=6,
                         encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                         decoder_ffn_dim=4096, max_position_embeddings=1024, forced_bos_token_id=0,
                         forced_eos_token_id=2, no_repeat_ngram_size=3, num_beams=4, length_penalty=2.0,
                         min_length=56, max_length=142, early_stopping=True, scale_embedding=False)
        model = BartForConditionalGeneration(cfg)
        model.generation_config.update(forced_bos_token_id=0, forced_eos_token_id=2, no_repeat_ngram_size=3,
                                       num_beams=4, length_penalty=2.0, min_length=56, max_length=142,
                                       early_stopping=True)
        model.save_pretrained(bart, safe_serialization=True)
        for f in os.listdir(os.path.join(FIXTURES, "bart-sum")):
            if "token" in f or f in ("vocab.json", "merges.txt"):
                shutil.copy(os.path.join(FIXTURES, "bart-sum", f), bart)
        # The fixture tokenizer's limit is its tiny model's; this one takes 1024.
        path = os.path.join(bart, "tokenizer_config.json")
        config = json.load(open(path))
        config["model_max_length"] = 1024
        json.dump(config, open(path, "w"), indent=1)
        print(f"made {bart}", file=sys.stderr)
    whisper = os.path.join(out, "whisper-base")
    if wanted(whisper) and not os.path.exists(os.path.join(whisper, "model.safetensors")):
        # openai/whisper-base's shape (73M parameters), random weights, with the
        # multilingual fixture's tokenizer, special-token ids and generation
        # settings (same vocabulary as the released checkpoints).
        fixture = os.path.join(FIXTURES, "whisper-random-multi")
        cfg = WhisperConfig.from_pretrained(fixture)
        cfg.update(dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                        decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80,
                        vocab_size=51865, max_source_positions=1500, max_target_positions=448,
                        num_hidden_layers=6))
        model = WhisperForConditionalGeneration(cfg)
        # The output projection is the (tied) token embedding: zero rows make
        # the special tokens' logits 0, below the best text token's at every
        # step, so random weights never stop early and every transcription is
        # exactly max_new_tokens text tokens on both sides.
        with torch.no_grad():
            model.model.decoder.embed_tokens.weight[cfg.eos_token_id:] = 0
        model.save_pretrained(whisper, safe_serialization=True)
        for f in os.listdir(fixture):
            if "token" in f or f in ("vocab.json", "merges.txt", "preprocessor_config.json"):
                shutil.copy(os.path.join(fixture, f), whisper)
        # The fixture's generation config, with whisper-base's max_length and
        # alignment heads (the fixture's name its 2-layer decoder's).
        generation = json.load(open(os.path.join(fixture, "generation_config.json")))
        generation.update(max_length=448, alignment_heads=[[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2],
                                                           [5, 4], [5, 6]])
        json.dump(generation, open(os.path.join(whisper, "generation_config.json"), "w"), indent=1)
        print(f"made {whisper}", file=sys.stderr)
    detr = os.path.join(out, "detr-resnet-50")
    if wanted(detr) and not os.path.exists(os.path.join(detr, "model.safetensors")):
        # facebook/detr-resnet-50's shape (41M parameters: ResNet-50, 6 + 6
        # layers of width 256, 100 queries, COCO's 91 labels), random
        # weights, transformers' ResNet layout (the same maths as timm's).
        from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

        cfg = DetrConfig(use_timm_backbone=False, backbone=None, use_pretrained_backbone=False,
                         backbone_config=ResNetConfig(out_features=["stage4"]), num_labels=91,
                         id2label={i: f"class {i}" for i in range(91)})
        model = DetrForObjectDetection(cfg)
        model.save_pretrained(detr, safe_serialization=True)
        DetrImageProcessor().save_pretrained(detr)
        print(f"made {detr}", file=sys.stderr)
    glpn = os.path.join(out, "glpn-kitti")
    if wanted(glpn) and not os.path.exists(os.path.join(glpn, "model.safetensors")):
        # vinvino02/glpn-kitti's shape (61M parameters: MiT-b4, decoder 64,
        # max_depth 80), random weights, GLPNImageProcessor's defaults.
        from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

        cfg = GLPNConfig(depths=[3, 8, 27, 3], hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8],
                         decoder_hidden_size=64, max_depth=80)
        GLPNForDepthEstimation(cfg).save_pretrained(glpn, safe_serialization=True)
        GLPNImageProcessor().save_pretrained(glpn)
        print(f"made {glpn}", file=sys.stderr)
    dpt = os.path.join(out, "dpt-large")
    if wanted(dpt) and not os.path.exists(os.path.join(dpt, "model.safetensors")):
        # Intel/dpt-large's shape (343M parameters: ViT-L/16 at 384, layers
        # 5/11/17/23 reassembled), random weights, its hub
        # preprocessor_config.json (384x384, bilinear).
        from transformers import DPTConfig, DPTForDepthEstimation

        cfg = DPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024])
        DPTForDepthEstimation(cfg).save_pretrained(dpt, safe_serialization=True)
        json.dump({"do_normalize": True, "do_resize": True, "ensure_multiple_of": 1,
                   "feature_extractor_type": "DPTFeatureExtractor", "image_mean": [0.5, 0.5, 0.5],
                   "image_std": [0.5, 0.5, 0.5], "keep_aspect_ratio": False, "resample": 2, "size": 384},
                  open(os.path.join(dpt, "preprocessor_config.json"), "w"), indent=1)
        print(f"made {dpt}", file=sys.stderr)
    segformer = os.path.join(out, "segformer-b0")
    if wanted(segformer) and not os.path.exists(os.path.join(segformer, "model.safetensors")):
        # nvidia/segformer-b0-finetuned-ade-512-512's shape (3.8M parameters:
        # MiT-b0, decoder 256, ADE20k's 150 labels), random weights,
        # SegformerImageProcessor's defaults (512x512).
        from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

        cfg = SegformerConfig(num_labels=150, id2label={i: f"class {i}" for i in range(150)},
                              label2id={f"class {i}": i for i in range(150)})
        SegformerForSemanticSegmentation(cfg).save_pretrained(segformer, safe_serialization=True)
        SegformerImageProcessor().save_pretrained(segformer)
        print(f"made {segformer}", file=sys.stderr)

    mask2former = os.path.join(out, "mask2former-swin-tiny")
    if wanted(mask2former) and not os.path.exists(os.path.join(mask2former, "model.safetensors")):
        # facebook/mask2former-swin-tiny-coco-instance's shape (47M
        # parameters: Swin-T, a 6-layer deformable pixel decoder and a
        # 9-layer masked-attention decoder of width 256, 100 queries, COCO's
        # 80 labels), random weights, its processor's size (shortest edge
        # 384, sides multiples of 32).
        from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation,
                                  Mask2FormerImageProcessor, SwinConfig)

        swin = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
        cfg = Mask2FormerConfig(backbone_config=swin, num_labels=80, id2label={i: f"class {i}" for i in range(80)},
                                label2id={f"class {i}": i for i in range(80)})
        Mask2FormerForUniversalSegmentation(cfg).save_pretrained(mask2former, safe_serialization=True)
        Mask2FormerImageProcessor(size={"shortest_edge": 384, "longest_edge": 1333}).save_pretrained(mask2former)
        print(f"made {mask2former}", file=sys.stderr)

    speecht5 = os.path.join(out, "speecht5-tts")
    if wanted(speecht5) and not os.path.exists(os.path.join(speecht5, "model.safetensors")):
        # microsoft/speecht5_tts's shape (144M parameters: 12 encoder and 6
        # decoder layers of width 768, 80 mel bins, reduction factor 2),
        # random weights, with the fixture's character tokenizer and one
        # random speaker (speakers/bench.npy). The stop head never fires
        # (bias -30), so both sides speak until maxlenratio ends the text.
        import numpy
        from transformers import SpeechT5Config, SpeechT5ForTextToSpeech

        fixture = os.path.join(FIXTURES, "speecht5-random")
        cfg = SpeechT5Config(max_speech_positions=1876, max_text_positions=600)
        model = SpeechT5ForTextToSpeech(cfg)
        with torch.no_grad():
            model.speech_decoder_postnet.prob_out.bias.fill_(-30.0)
        model.save_pretrained(speecht5, safe_serialization=True)
        for f in os.listdir(fixture):
            if f in ("spm_char.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
                shutil.copy(os.path.join(fixture, f), speecht5)
        path = os.path.join(speecht5, "tokenizer_config.json")
        config = json.load(open(path))
        config["model_max_length"] = 600  # the fixture's is its tiny model's
        json.dump(config, open(path, "w"), indent=1)
        os.makedirs(os.path.join(speecht5, "speakers"), exist_ok=True)
        numpy.save(os.path.join(speecht5, "speakers", "bench.npy"),
                   numpy.random.default_rng(0).standard_normal(512).astype(numpy.float32) * 0.05)
        print(f"made {speecht5}", file=sys.stderr)
    hifigan = os.path.join(out, "speecht5-hifigan")
    if wanted(hifigan) and not os.path.exists(os.path.join(hifigan, "model.safetensors")):
        # microsoft/speecht5_hifigan's shape (13M parameters), random weights.
        from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

        SpeechT5HifiGan(SpeechT5HifiGanConfig()).save_pretrained(hifigan, safe_serialization=True)
        print(f"made {hifigan}", file=sys.stderr)


def generate(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = quantized(on_device(AutoModelForCausalLM.from_pretrained(args.model)), args)
    inputs = tok(PROMPT, return_tensors="pt").to(DEVICE)
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=999)
    with torch.no_grad():
        model.generate(**inputs, **kwargs)  # warm-up
        synchronize()
        started = time.perf_counter()
        out = model.generate(**inputs, **kwargs)
        synchronize()
        one = time.perf_counter() - started
        new = out.shape[1] - inputs["input_ids"].shape[1]
        print(json.dumps({"bench": "generate", "who": "transformers" + args.who_suffix, "calls": 1, "tokens": new,
                          "seconds": one, "tokens_per_s": new / one}))
        if args.calls == 0:
            return
        started = time.perf_counter()
        total = 0
        for _ in range(args.calls):
            out = model.generate(**inputs, **kwargs)
            total += out.shape[1] - inputs["input_ids"].shape[1]
        synchronize()
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "generate", "who": "transformers", "calls": args.calls, "tokens": total,
                          "seconds": seconds, "tokens_per_s": total / seconds}))


def quantized(model, args):
    """The model with torch.ao's dynamic int8 quantization of its Linear
    layers when --int8 is given (what inferd's quantize = "dynamic-int8"
    does, with per-tensor rather than per-row weight scales)."""
    if not args.int8:
        return model
    import torch
    import warnings
    warnings.filterwarnings("ignore")
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def classify(args):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    torch.set_num_threads(args.threads)
    texts = [l for l in open(args.payload).read().splitlines() if l.strip()]
    model = quantized(on_device(AutoModelForSequenceClassification.from_pretrained(args.model)), args)
    pipe = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(args.model),
                    device=DEVICE)
    pipe(texts[0])
    latencies = []
    started = time.perf_counter()
    for i in range(args.requests):
        t = time.perf_counter()
        pipe(texts[i % len(texts)], truncation=True)
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    latencies.sort()
    pct = lambda p: latencies[round((len(latencies) - 1) * p)] * 1e3
    print(json.dumps({"bench": "classify", "who": "transformers per request" + args.who_suffix,
                      "requests": args.requests,
                      "rps": args.requests / seconds, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))
    best = None
    for batch_size in (8, 16, 32, 64):
        batch = [texts[i % len(texts)] for i in range(args.requests)]
        started = time.perf_counter()
        pipe(batch, batch_size=batch_size, truncation=True)
        rps = args.requests / (time.perf_counter() - started)
        if best is None or rps > best[1]:
            best = (batch_size, rps)
    print(json.dumps({"bench": "classify", "who": "transformers batched" + args.who_suffix, "batch_size": best[0],
                      "rps": best[1]}))


def summarize(args):
    """pipeline("summarization") on the articles of a file (one per line),
    after a warm-up run: one at a time, and (several articles) also as one
    padded batch; the seconds per round and the summaries (to check that
    inferd gives the same)."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    articles = [line for line in open(args.payload).read().splitlines() if line.strip()]
    pipe = pipeline("summarization", model=args.model, device=DEVICE, torch_dtype=getattr(torch, DTYPE))
    pipe(articles[0], truncation=True)
    runs = [("one at a time", 1)] + ([("batched", len(articles))] if len(articles) > 1 else [])
    for who, batch_size in runs:
        started = time.perf_counter()
        out = pipe(articles, truncation=True, batch_size=batch_size)
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "summarize", "who": f"transformers {who}", "articles": len(articles),
                          "batch_size": batch_size, "seconds": seconds,
                          "summaries": [o["summary_text"] for o in out]}))


def transcribe(args):
    """pipeline("automatic-speech-recognition") on one WAV file (16-bit PCM,
    read as inferd does: int16 / 32768), greedy, in the given language, a
    fixed number of new tokens, after a warm-up: one call, then `calls`
    sequential calls. The seconds, the text tokens each call generated (from
    generate's output: ids below the end-of-text id, which the prompt's
    special tokens are not) and the texts (to check that inferd gives the
    same)."""
    import wave

    import numpy as np
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    with wave.open(args.audio) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "16-bit mono PCM expected"
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    pipe = pipeline("automatic-speech-recognition", model=args.model, device="cpu")
    eos = pipe.model.generation_config.eos_token_id
    tokens = []
    generate = pipe.model.generate

    def counting(*a, **k):
        out = generate(*a, **k)
        seq = out["sequences"] if isinstance(out, dict) else out
        tokens.extend(int((row < eos).sum()) for row in seq)
        return out

    pipe.model.generate = counting
    kwargs = dict(generate_kwargs=dict(language=args.language, task="transcribe", num_beams=1,
                                       do_sample=False, max_new_tokens=args.new_tokens))
    # The pipeline pops "raw" from its input: a new dict per call.
    call = lambda: pipe({"raw": samples, "sampling_rate": rate}, **kwargs)["text"]
    call()  # warm-up
    for calls in (1, args.calls):
        tokens.clear()
        started = time.perf_counter()
        texts = [call() for _ in range(calls)]
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "transcribe", "who": "transformers", "calls": calls,
                          "audio_seconds": len(samples) / rate, "seconds": seconds, "tokens": tokens,
                          "texts": texts}))


def detect(args):
    """pipeline("object-detection") on one image, after a warm-up: one call,
    then `calls` sequential calls. The seconds and the objects (label, box)
    of each call."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    pipe = pipeline("object-detection", model=args.model, device="cpu")
    call = lambda: [{"label": o["label"], "box": [o["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]}
                    for o in pipe(args.image, threshold=args.threshold)]
    call()  # warm-up
    for calls in (1, args.calls):
        started = time.perf_counter()
        objects = [call() for _ in range(calls)]
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "detect", "who": "transformers", "calls": calls, "seconds": seconds,
                          "objects": objects}))


def depth(args):
    """pipeline("depth-estimation") on one image, after a warm-up: one call,
    then `calls` sequential calls. The seconds and each call's depth range
    (min and max of predicted_depth at the image's size)."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    pipe = pipeline("depth-estimation", model=args.model, device="cpu")

    def call():
        out = pipe(args.image)["predicted_depth"]
        return [float(out.min()), float(out.max())]

    call()  # warm-up
    for calls in (1, args.calls):
        started = time.perf_counter()
        ranges = [call() for _ in range(calls)]
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "depth", "who": "transformers", "model": os.path.basename(args.model),
                          "calls": calls, "seconds": seconds, "ranges": ranges}))


def segment(args):
    """pipeline("image-segmentation") on one image, after a warm-up: one
    call, then `calls` sequential calls. The seconds and each call's labels."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    pipe = pipeline("image-segmentation", model=args.model, device="cpu")
    call = lambda: [s["label"] for s in pipe(args.image)]
    call()  # warm-up
    for calls in (1, args.calls):
        started = time.perf_counter()
        labels = [call() for _ in range(calls)]
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "segment", "who": "transformers", "model": os.path.basename(args.model),
                          "calls": calls, "seconds": seconds, "labels": labels}))


def speak(args):
    """pipeline("text-to-speech") on one text with the model's bench speaker,
    after a warm-up: one call, then `calls` sequential calls. The seconds
    and each call's audio length in seconds."""
    import numpy
    import torch
    from transformers import SpeechT5HifiGan, pipeline

    torch.set_num_threads(args.threads)
    vocoder = SpeechT5HifiGan.from_pretrained(args.vocoder)
    pipe = pipeline("text-to-speech", model=args.model, vocoder=vocoder, device="cpu")
    speaker = torch.from_numpy(numpy.load(os.path.join(args.model, "speakers", "bench.npy")))[None]
    forward = {"speaker_embeddings": speaker, "maxlenratio": args.maxlenratio}
    call = lambda: len(pipe(args.text, forward_params=forward)["audio"]) / 16000
    call()  # warm-up
    for calls in (1, args.calls):
        started = time.perf_counter()
        durations = [call() for _ in range(calls)]
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "speak", "who": "transformers", "calls": calls, "seconds": seconds,
                          "durations": durations}))


def arrivals(args):
    """The load of inferd-bench's `arrivals` (its JSON line's "plan": arrival
    times and lengths) served by transformers one request at a time, as a
    server without batching would: each request starts when it has arrived
    and the one before is done; its time to first token is its wait plus
    its first token's time. Every request's generation is run and timed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    row = json.loads(open(args.inferd).readline())
    plan = row["plan"]
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    ids = tok(args.prompt, return_tensors="pt").input_ids

    def run(n):
        with torch.no_grad():
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=model.config.eos_token_id)

    run(8)  # warm-up
    started = time.perf_counter()
    run(1)
    first_token = time.perf_counter() - started
    clock, ttft, tokens = 0.0, [], 0
    for at, n in plan:
        begin = max(clock, at)
        t = time.perf_counter()
        run(n)
        took = time.perf_counter() - t
        ttft.append(begin - at + first_token)
        clock = begin + took
        tokens += n
    ttft.sort()
    pick = lambda q: ttft[round((len(ttft) - 1) * q)]
    print(json.dumps({"bench": "arrivals", "who": "transformers", "rate": row["rate"], "requests": len(plan),
                      "tokens": tokens, "seconds": clock, "tokens_per_s": tokens / clock,
                      "ttft_p50_s": pick(0.5), "ttft_p99_s": pick(0.99)}))


def summary_arrivals(args):
    """The load of inferd-bench's `summary-arrivals` (its JSON line's "plan")
    served by pipeline("summarization") one request at a time, as a server
    without batching would: each request starts when it has arrived and the
    one before is done, with the article and exact length inferd was sent.
    Every request is run and timed."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(args.threads)
    row = json.loads(open(args.inferd).readline())
    plan = row["plan"]
    articles = [line for line in open(args.payload).read().splitlines() if line.strip()]
    pipe = pipeline("summarization", model=args.model, device="cpu")
    pipe(articles[0], min_length=9, max_new_tokens=8)  # warm-up
    clock, latency, waits, tokens = 0.0, [], [], 0
    for k, (at, n) in enumerate(plan):
        begin = max(clock, at)
        t = time.perf_counter()
        pipe(articles[k % len(articles)], min_length=n + 1, max_new_tokens=n)
        took = time.perf_counter() - t
        latency.append(begin - at + took)
        waits.append(begin - at)
        clock = begin + took
        tokens += n
    latency.sort()
    pick = lambda q: latency[round((len(latency) - 1) * q)]
    print(json.dumps({"bench": "summary-arrivals", "who": "transformers", "rate": row["rate"],
                      "requests": len(plan), "tokens": tokens, "seconds": clock, "tokens_per_s": tokens / clock,
                      "latency_p50_s": pick(0.5), "latency_p99_s": pick(0.99),
                      "wait_mean_s": sum(waits) / len(waits),
                      "wait_p50_s": sorted(waits)[round((len(waits) - 1) * 0.5)],
                      "wait_p99_s": sorted(waits)[round((len(waits) - 1) * 0.99)]}))


def peak(args):
    """The machine's fp32 matmul throughput with LibTorch at N threads: the
    best of several 2048x2048 products."""
    import torch

    torch.set_num_threads(args.threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    print(json.dumps({"bench": "peak", "threads": args.threads, "gflops": best}))


def flops(args):
    """Floating-point operations inferd executes for one sequence-
    classification batch of the first `batch` payload lines, padded to the
    longest. Per layer and token: the Q/K/V/output projections (8 d^2), the
    feed-forward (4 d ff) and attention (4 L d). The head reads only the first
    position, so inferd's last layer computes keys and values for every token
    (4 d^2 each) but the rest for the first token alone; that is what is
    counted."""
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(args.model)
    tok = AutoTokenizer.from_pretrained(args.model)
    texts = [l for l in open(args.payload).read().splitlines() if l.strip()]
    d, ff, layers = cfg.dim, cfg.hidden_dim, cfg.n_layers

    def executed(n):
        full_layer = n * (8 * d * d + 4 * d * ff + 4 * n * d)
        last_layer = n * 4 * d * d + (4 * d * d + 4 * d * ff + 4 * n * d)
        return (layers - 1) * full_layer + last_layer

    # inferd-bench sends consecutive groups of `batch` lines: the mean over them.
    groups = [texts[i : i + args.batch] for i in range(0, len(texts) - args.batch + 1, args.batch)]
    lengths = [max(len(tok(t, truncation=True)["input_ids"]) for t in g) for g in groups]
    total = sum(executed(n) * args.batch for n in lengths)
    print(json.dumps({"bench": "flops", "batch": args.batch, "length": max(lengths),
                      "flops": total / len(groups)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-models")
    m.add_argument("--out", required=True)
    m.add_argument("--what", default="all", choices=["all", *BENCH_MODELS])
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--threads", type=int, required=True)
    g.add_argument("--new-tokens", type=int, default=128)
    g.add_argument("--calls", type=int, default=8)
    c = sub.add_parser("classify")
    c.add_argument("--model", required=True)
    c.add_argument("--threads", type=int, required=True)
    c.add_argument("--payload", required=True)
    c.add_argument("--requests", type=int, default=200)
    for q in (g, c):
        q.add_argument("--int8", action="store_true", help="torch.ao dynamic int8 quantization of Linear layers")
        q.add_argument("--who-suffix", default="", help="appended to the 'who' of each result")
    z = sub.add_parser("summarize")
    z.add_argument("--model", required=True)
    z.add_argument("--threads", type=int, required=True)
    z.add_argument("--payload", required=True)
    t = sub.add_parser("transcribe")
    t.add_argument("--model", required=True)
    t.add_argument("--threads", type=int, required=True)
    t.add_argument("--audio", required=True)
    t.add_argument("--language", default="en")
    t.add_argument("--new-tokens", type=int, default=64)
    t.add_argument("--calls", type=int, default=8)
    d = sub.add_parser("detect")
    d.add_argument("--model", required=True)
    d.add_argument("--threads", type=int, required=True)
    d.add_argument("--image", required=True)
    d.add_argument("--threshold", type=float, default=0.5)
    d.add_argument("--calls", type=int, default=8)
    e = sub.add_parser("depth")
    e.add_argument("--model", required=True)
    e.add_argument("--threads", type=int, required=True)
    e.add_argument("--image", required=True)
    e.add_argument("--calls", type=int, default=4)
    g = sub.add_parser("segment")
    g.add_argument("--model", required=True)
    g.add_argument("--threads", type=int, required=True)
    g.add_argument("--image", required=True)
    g.add_argument("--calls", type=int, default=4)
    s = sub.add_parser("speak")
    s.add_argument("--model", required=True)
    s.add_argument("--vocoder", required=True)
    s.add_argument("--threads", type=int, required=True)
    s.add_argument("--text", required=True)
    s.add_argument("--maxlenratio", type=float, required=True)
    s.add_argument("--calls", type=int, default=4)
    a = sub.add_parser("arrivals")
    a.add_argument("--model", required=True)
    a.add_argument("--threads", type=int, required=True)
    a.add_argument("--prompt", required=True)
    a.add_argument("--inferd", required=True, help="a file whose first line is inferd-bench arrivals' JSON")
    y = sub.add_parser("summary-arrivals")
    y.add_argument("--model", required=True)
    y.add_argument("--threads", type=int, required=True)
    y.add_argument("--payload", required=True)
    y.add_argument("--inferd", required=True, help="a file whose first line is inferd-bench summary-arrivals' JSON")
    k = sub.add_parser("peak")
    k.add_argument("--threads", type=int, required=True)
    f = sub.add_parser("flops")
    f.add_argument("--model", required=True)
    f.add_argument("--payload", required=True)
    f.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    if args.cmd == "make-models":
        make_models(args.out, args.what)
    elif args.cmd == "generate":
        generate(args)
    elif args.cmd == "summarize":
        summarize(args)
    elif args.cmd == "transcribe":
        transcribe(args)
    elif args.cmd == "detect":
        detect(args)
    elif args.cmd == "depth":
        depth(args)
    elif args.cmd == "segment":
        segment(args)
    elif args.cmd == "arrivals":
        arrivals(args)
    elif args.cmd == "summary-arrivals":
        summary_arrivals(args)
    elif args.cmd == "speak":
        speak(args)
    elif args.cmd == "peak":
        peak(args)
    elif args.cmd == "flops":
        flops(args)
    else:
        classify(args)


if __name__ == "__main__":
    main()
