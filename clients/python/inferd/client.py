"""The connection to the daemon, and ``pipeline()``-shaped calls over it.

Each task has one function that turns ``pipeline()``'s arguments into the
task's request message and the response back into what ``transformers``
4.57.6 returns for the same call: a single input gives a single result and a
list gives a list, with the same unwrapping rules the Hugging Face pipelines
apply (a one-mask fill-mask result is a flat list, a top-1 answer is a dict,
and so on).
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import grpc

from .v1 import inference_pb2 as api
from .v1 import inference_pb2_grpc
from .v1 import models_pb2
from .v1 import models_pb2_grpc

DEFAULT_ADDRESS = "localhost:50051"
# Images and audio travel as file bytes; the daemon's default limit is 16 MiB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class InferdError(Exception):
    """A call the daemon refused or could not answer.

    ``code`` is the gRPC status name ("INVALID_ARGUMENT", "NOT_FOUND",
    "RESOURCE_EXHAUSTED", ...) and ``message`` says what was wrong.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _address(address: Optional[str]) -> str:
    address = address or os.environ.get("INFERD_ADDR") or DEFAULT_ADDRESS
    for scheme in ("http://", "grpc://"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    return address.rstrip("/")


class Client:
    """A connection to an inferd daemon.

    ``address`` is ``host:port`` (an ``http://`` prefix is accepted);
    absent, ``$INFERD_ADDR`` or ``localhost:50051``. ``timeout`` (seconds)
    becomes every call's gRPC deadline.
    """

    def __init__(self, address: Optional[str] = None, *, timeout: Optional[float] = None):
        self.address = _address(address)
        self.timeout = timeout
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel = grpc.insecure_channel(self.address, options=options)
        self.inference = inference_pb2_grpc.InferenceStub(self._channel)
        self.models = models_pb2_grpc.ModelsStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, rpc: str, request: Any) -> Any:
        """Calls ``rpc`` ("Classify", "LoadModel", ...) with a request
        message; a refusal raises InferdError."""
        stub = self.models if hasattr(self.models, rpc) else self.inference
        try:
            return getattr(stub, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise InferdError(e.code().name, e.details() or "") from None

    def pipeline(self, task: str, model: Optional[str] = None, **defaults: Any) -> "Pipeline":
        """A callable like ``transformers.pipeline(task, model=...)``.
        ``model`` names a model the daemon has loaded (absent: the task's
        default model); ``defaults`` are keyword arguments for every call."""
        return Pipeline(self, task, model, defaults)

    def load_model(
        self,
        source: str,
        task: str,
        name: str = "",
        *,
        revision: str = "",
        devices: Sequence[str] = (),
        instances: int = 0,
        make_default: bool = False,
        **options: int,
    ) -> Any:
        """Loads a model (hub id or local directory) for a task and returns
        its ModelInfo once it is ready. ``options``: max_batch_size,
        max_queue_delay_ms, queue_size, intra_op_threads."""
        request = models_pb2.LoadModelRequest(
            name=name,
            source=source,
            revision=revision,
            task=task,
            devices=list(devices),
            instances=instances,
            make_default=make_default,
            options=models_pb2.ModelOptions(**options) if options else None,
        )
        return self.call("LoadModel", request)

    def unload_model(self, name: str) -> None:
        self.call("UnloadModel", models_pb2.UnloadModelRequest(name=name))

    def list_models(self) -> List[Any]:
        return list(self.call("ListModels", models_pb2.ListModelsRequest()).models)

    def get_model(self, name: str) -> Any:
        return self.call("GetModel", models_pb2.GetModelRequest(name=name))


def pipeline(task: str, model: Optional[str] = None, *, address: Optional[str] = None,
             timeout: Optional[float] = None, **defaults: Any) -> "Pipeline":
    """``transformers.pipeline(task, model=...)``, answered by the daemon at
    ``address`` (absent: ``$INFERD_ADDR`` or ``localhost:50051``)."""
    return Client(address, timeout=timeout).pipeline(task, model, **defaults)


class Pipeline:
    """One task on one model (or the task's default model); call it as
    you would call the pipeline transformers returns."""

    def __init__(self, client: Client, task: str, model: Optional[str], defaults: Dict[str, Any]):
        self.client = client
        self.task = task
        self.model = model or ""
        self.defaults = dict(defaults)
        self._run = _task_function(task)

    def __call__(self, inputs: Any = None, *args: Any, **kwargs: Any) -> Any:
        asked = dict(kwargs)
        merged = {**self.defaults, **kwargs}
        merged.pop("batch_size", None)  # the daemon batches requests itself
        return self._run(self, inputs, args, merged, asked)

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task!r}, model={self.model or '<default>'!r}, address={self.client.address!r})"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _take(kwargs: Dict[str, Any], known: Iterable[str], task: str) -> Dict[str, Any]:
    """The keyword arguments, after checking that the task knows each one."""
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"{task}: unexpected argument(s) {', '.join(unknown)} (accepted: {', '.join(sorted(known))})")
    return kwargs


def _many(inputs: Any) -> bool:
    return isinstance(inputs, list)


def _as_list(inputs: Any) -> list:
    return list(inputs) if _many(inputs) else [inputs]


def _texts(inputs: Any, task: str) -> List[str]:
    texts = _as_list(inputs)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"{task}: inputs must be strings, got {type(t).__name__}")
    return texts


def _read_file(item: Any, kind: str) -> bytes:
    """Bytes as they are; a path (str or PathLike) read from disk."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if path.startswith(("http://", "https://")):
            raise ValueError(f"{kind} URLs are not fetched by the client: download the file and pass its bytes or path")
        with open(path, "rb") as f:
            return f.read()
    raise TypeError(f"{kind} inputs are file bytes or a path, got {type(item).__name__}")


def _image_bytes(item: Any) -> bytes:
    if hasattr(item, "save") and hasattr(item, "mode"):  # a PIL image
        out = io.BytesIO()
        item.save(out, format="PNG")
        return out.getvalue()
    return _read_file(item, "image")


def _float_wav(samples: Sequence[float], sampling_rate: int) -> bytes:
    """Mono 32-bit float WAV bytes (WAVE_FORMAT_IEEE_FLOAT)."""
    data = struct.pack(f"<{len(samples)}f", *[float(s) for s in samples])
    fmt = struct.pack("<HHIIHH", 3, 1, sampling_rate, sampling_rate * 4, 4, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _audio_bytes(item: Any) -> bytes:
    if isinstance(item, dict):
        samples = item.get("raw", item.get("array"))
        rate = item.get("sampling_rate")
        if samples is None or rate is None:
            raise ValueError('audio dicts need "raw" (or "array") samples and "sampling_rate"')
        if hasattr(samples, "tolist"):
            samples = samples.tolist()
        return _float_wav(samples, int(rate))
    return _read_file(item, "audio")


def _scores(labels: Iterable[Any]) -> List[Dict[str, Any]]:
    return [{"label": ls.label, "score": ls.score} for ls in labels]


def _early_stopping(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------


def _classify(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, ("top_k", "function_to_apply"), p.task)
    items = _as_list(inputs)
    messages = []
    for item in items:
        if isinstance(item, dict):
            messages.append(api.TextInput(text=item["text"], text_pair=item.get("text_pair")))
        elif isinstance(item, str):
            messages.append(api.TextInput(text=item))
        else:
            raise TypeError("text-classification inputs are strings or {'text', 'text_pair'} dicts")
    # pipeline(): without top_k, the best label as a bare dict; top_k=None
    # every label, top_k=k the best k, as lists.
    legacy = "top_k" not in kw
    top_k = kw.get("top_k", 1)
    request = api.ClassifyRequest(
        model=p.model,
        inputs=messages,
        top_k=1 if legacy else (0 if top_k is None else int(top_k)),
        function_to_apply=kw.get("function_to_apply") or "",
    )
    results = p.client.call("Classify", request).results
    per_input = [(_scores(r.labels)[0] if legacy else _scores(r.labels)) for r in results]
    if _many(inputs):
        return per_input
    if isinstance(inputs, str) and "top_k" not in asked:
        return [per_input[0]]
    return per_input[0]


def _zero_shot(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    if args and "candidate_labels" not in kw:
        kw = {**kw, "candidate_labels": args[0]}
    _take(kw, ("candidate_labels", "hypothesis_template", "multi_label"), p.task)
    labels = kw.get("candidate_labels")
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    request = api.ZeroShotClassifyRequest(
        model=p.model,
        inputs=_texts(inputs, p.task),
        candidate_labels=list(labels or []),
        hypothesis_template=kw.get("hypothesis_template") or "",
        multi_label=bool(kw.get("multi_label", False)),
    )
    results = [
        {"sequence": r.sequence, "labels": list(r.labels), "scores": list(r.scores)}
        for r in p.client.call("ZeroShotClassify", request).results
    ]
    return results if _many(inputs) else results[0]


def _fill_mask(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, ("top_k", "targets"), p.task)
    targets = kw.get("targets") or []
    if isinstance(targets, str):
        targets = [targets]
    request = api.FillMaskRequest(model=p.model, inputs=_texts(inputs, p.task), targets=list(targets))
    if kw.get("top_k") is not None:
        request.top_k = int(kw["top_k"])
    per_input = []
    for result in p.client.call("FillMask", request).results:
        masks = [
            [{"score": c.score, "token": c.token, "token_str": c.token_str, "sequence": c.sequence}
             for c in mask.candidates]
            for mask in result.masks
        ]
        # One mask: its candidates; several: a list per mask.
        per_input.append(masks[0] if len(masks) == 1 else masks)
    if _many(inputs) and len(per_input) > 1:
        return per_input
    return per_input[0]


def _token_classification(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, ("aggregation_strategy", "ignore_labels"), p.task)
    request = api.ClassifyTokensRequest(
        model=p.model,
        inputs=_texts(inputs, p.task),
        aggregation_strategy=str(kw.get("aggregation_strategy") or "none").lower(),
    )
    if kw.get("ignore_labels") is not None:
        request.ignore_labels.CopyFrom(api.StringList(values=list(kw["ignore_labels"])))
    grouped = request.aggregation_strategy != "none"
    per_input = []
    for result in p.client.call("ClassifyTokens", request).results:
        entities = []
        for e in result.entities:
            if grouped:
                entities.append({"entity_group": e.entity_group, "score": e.score, "word": e.word,
                                 "start": e.start, "end": e.end})
            else:
                entities.append({"entity": e.entity, "score": e.score, "index": e.index, "word": e.word,
                                 "start": e.start, "end": e.end})
        per_input.append(entities)
    return per_input if _many(inputs) else per_input[0]


_QA_SETTINGS = ("top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len",
                "handle_impossible_answer", "align_to_words")


def _question_answering(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    kw = dict(kw)
    question, context = kw.pop("question", None), kw.pop("context", None)
    _take(kw, _QA_SETTINGS, p.task)
    if question is not None:
        questions = question if isinstance(question, list) else [question]
        contexts = context if isinstance(context, list) else [context] * len(questions)
        examples = [{"question": q, "context": c} for q, c in zip(questions, contexts)]
    elif isinstance(inputs, str) and args:
        examples = [{"question": inputs, "context": args[0]}]
    else:
        examples = _as_list(inputs)
    if not examples or any(not isinstance(e, dict) or "question" not in e or "context" not in e for e in examples):
        raise TypeError("question-answering takes question= and context=, or {'question', 'context'} dicts")
    request = api.AnswerQuestionRequest(
        model=p.model,
        inputs=[api.QuestionInput(question=e["question"], context=e["context"]) for e in examples],
        handle_impossible_answer=bool(kw.get("handle_impossible_answer", False)),
    )
    for key in ("top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len"):
        if kw.get(key) is not None:
            setattr(request, key, int(kw[key]))
    if kw.get("align_to_words") is not None:
        request.align_to_words = bool(kw["align_to_words"])
    per_example = []
    for result in p.client.call("AnswerQuestion", request).results:
        answers = [{"score": a.score, "start": a.start, "end": a.end, "answer": a.answer} for a in result.answers]
        # One answer: a dict, as pipeline() gives it.
        per_example.append(answers[0] if len(answers) == 1 else answers)
    return per_example[0] if len(per_example) == 1 else per_example


def _feature_extraction(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, (), p.task)
    request = api.EmbedRequest(model=p.model, inputs=_texts(inputs, p.task), pooling="none",
                               return_token_embeddings=True)
    # pipeline() keeps the batch dimension of 1: [1][tokens][hidden] per text.
    per_input = [[[list(v.values) for v in r.token_embeddings]] for r in p.client.call("Embed", request).results]
    return per_input if _many(inputs) else per_input[0]


_GENERATE_SETTINGS = ("max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_k",
                      "top_p", "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences", "seed",
                      "stop", "return_full_text")


def _text_generation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, _GENERATE_SETTINGS, p.task)
    request = api.GenerateRequest(model=p.model, inputs=_texts(inputs, p.task))
    for key in _GENERATE_SETTINGS:
        value = kw.get(key)
        if value is None:
            continue
        if key == "stop":
            request.stop.extend([value] if isinstance(value, str) else list(value))
        else:
            setattr(request, key, value)
    per_input = [[{"generated_text": s.generated_text} for s in r.sequences]
                 for r in p.client.call("Generate", request).results]
    return per_input if _many(inputs) else per_input[0]


_SEQ2SEQ_SETTINGS = ("min_length", "max_length", "max_new_tokens", "num_beams", "length_penalty",
                     "early_stopping", "no_repeat_ngram_size", "num_return_sequences", "truncation")


def _seq2seq(p: Pipeline, inputs: Any, kw: Dict[str, Any], rpc: str, request: Any, key: str) -> Any:
    if kw.get("truncation") is False:
        raise ValueError("inferd always truncates inputs longer than a BART or Marian model's positions")
    request.model = p.model
    request.inputs.extend(_texts(inputs, p.task))
    for name in ("min_length", "max_length", "max_new_tokens", "num_beams", "no_repeat_ngram_size",
                 "num_return_sequences"):
        if kw.get(name) is not None:
            setattr(request, name, int(kw[name]))
    if kw.get("length_penalty") is not None:
        request.length_penalty = float(kw["length_penalty"])
    request.early_stopping = _early_stopping(kw.get("early_stopping"))
    field = "summaries" if rpc == "Summarize" else "translations"
    per_input = [[{key: getattr(t, key)} for t in getattr(r, field)] for r in p.client.call(rpc, request).results]
    if not _many(inputs):
        return per_input[0]
    # One record per input: a flat list, as pipeline() flattens it.
    if all(len(records) == 1 for records in per_input):
        return [records[0] for records in per_input]
    return per_input


def _summarization(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, _SEQ2SEQ_SETTINGS, p.task)
    return _seq2seq(p, inputs, kw, "Summarize", api.SummarizeRequest(), "summary_text")


def _translation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, _SEQ2SEQ_SETTINGS + ("src_lang", "tgt_lang"), p.task)
    src, tgt = kw.get("src_lang") or "", kw.get("tgt_lang") or ""
    # pipeline("translation_en_to_fr") names its direction.
    if p.task.startswith("translation_") and "_to_" in p.task and not (src or tgt):
        src, tgt = p.task[len("translation_"):].split("_to_", 1)
    request = api.TranslateRequest(src_lang=src, tgt_lang=tgt)
    return _seq2seq(p, inputs, kw, "Translate", request, "translation_text")


def _image_classification(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, ("top_k", "function_to_apply"), p.task)
    request = api.ClassifyImageRequest(
        model=p.model,
        inputs=[api.ImageInput(data=_image_bytes(i)) for i in _as_list(inputs)],
        function_to_apply=kw.get("function_to_apply") or "",
    )
    if kw.get("top_k") is not None:
        request.top_k = int(kw["top_k"])
    per_input = [_scores(r.labels) for r in p.client.call("ClassifyImage", request).results]
    return per_input if _many(inputs) else per_input[0]


def _speech_recognition(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    _take(kw, ("return_timestamps", "chunk_length_s", "stride_length_s"), p.task)
    request = api.TranscribeRequest(
        model=p.model,
        inputs=[api.AudioInput(data=_audio_bytes(i)) for i in _as_list(inputs)],
    )
    stamps = kw.get("return_timestamps")
    if stamps:
        request.return_timestamps = str(stamps)
    if kw.get("chunk_length_s") is not None:
        request.chunk_length_s = float(kw["chunk_length_s"])
    stride = kw.get("stride_length_s")
    if stride is not None:
        request.stride_length_s.extend([float(s) for s in stride] if isinstance(stride, (list, tuple))
                                       else [float(stride)])
    per_input = []
    for r in p.client.call("Transcribe", request).results:
        out: Dict[str, Any] = {"text": r.text}
        if stamps:
            out["chunks"] = [{"text": c.text, "timestamp": tuple(c.timestamp)} for c in r.chunks]
        per_input.append(out)
    return per_input if _many(inputs) else per_input[0]


_TaskFunction = Callable[[Pipeline, Any, tuple, Dict[str, Any], Dict[str, Any]], Any]

_TASKS: Dict[str, _TaskFunction] = {
    "text-classification": _classify,
    "sentiment-analysis": _classify,
    "zero-shot-classification": _zero_shot,
    "fill-mask": _fill_mask,
    "token-classification": _token_classification,
    "ner": _token_classification,
    "question-answering": _question_answering,
    "feature-extraction": _feature_extraction,
    "text-generation": _text_generation,
    "summarization": _summarization,
    "translation": _translation,
    "image-classification": _image_classification,
    "automatic-speech-recognition": _speech_recognition,
}


def _task_function(task: str) -> _TaskFunction:
    if task in _TASKS:
        return _TASKS[task]
    if task.startswith("translation_") and "_to_" in task:
        return _translation
    raise ValueError(f"unknown task {task!r}; this client knows {', '.join(sorted(_TASKS))} "
                     "(and translation_XX_to_YY); custom plugin tasks go through Client.call('Run', ...)")
