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
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import grpc

from .v1 import inference_pb2 as api
from .v1 import inference_pb2_grpc
from .v1 import models_pb2
from .v1 import models_pb2_grpc

DEFAULT_ADDRESS = "localhost:50051"
# Images and audio travel as file bytes (the daemon's default limit is 16 MiB);
# depth maps come back as 4 bytes a pixel.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class InferdError(Exception):
    """A call the daemon refused or could not answer.

    ``code`` is the gRPC status name ("INVALID_ARGUMENT", "NOT_FOUND",
    "RESOURCE_EXHAUSTED", ...) and ``message`` says what was wrong.
    """

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _naming_the_argument(error: ValueError, arguments: Dict[str, Any]) -> ValueError:
    """protobuf's "Value out of range: -1", which names no field, with the
    pipeline argument(s) that carried the value (nested ones such as
    generate_kwargs included)."""
    text = str(error)
    prefix = "Value out of range: "
    if not text.startswith(prefix):
        return error
    value = text[len(prefix):]
    flat = dict(arguments)
    for outer, inner in arguments.items():
        if isinstance(inner, dict):
            flat.update({f"{outer}[{key!r}]": v for key, v in inner.items()})
    names = [name for name, v in flat.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and str(v) == value]
    if not names:
        return error
    return ValueError(f"{' / '.join(names)}={value} is out of range: the daemon takes a count here (0 or more, "
                      f"below 2**32)")


def _refusal(e: grpc.RpcError) -> InferdError:
    return InferdError(e.code().name, e.details() or "")


def _address(address: Optional[str]) -> str:
    address = address or os.environ.get("INFERD_ADDR") or DEFAULT_ADDRESS
    for scheme in ("http://", "https://", "grpc://"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    address = address.rstrip("/")
    # gRPC would take a bare host to mean port 443.
    if not address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")) and not address.rsplit("]", 1)[-1].count(":"):
        address += ":" + DEFAULT_ADDRESS.rsplit(":", 1)[1]
    return address


# Arguments of transformers.pipeline() about running the model locally: the
# daemon places and runs its models, so they have no meaning here.
_LOCAL_EXECUTION = ("device", "device_map", "dtype", "torch_dtype", "framework", "trust_remote_code",
                    "tokenizer", "feature_extractor", "image_processor", "use_fast", "model_kwargs")


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <key>`` to every call."""

    def __init__(self, key: str):
        self._metadata = ("authorization", f"Bearer {key}")

    def _with_key(self, details: Any) -> Any:
        metadata = list(details.metadata or []) + [self._metadata]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_key(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_key(client_call_details), request)


class Client:
    """A connection to an inferd daemon.

    ``address`` is ``host:port`` (an ``http://`` prefix is accepted);
    absent, ``$INFERD_ADDR`` or ``localhost:50051``. ``timeout`` (seconds)
    becomes every call's gRPC deadline. ``api_key`` (absent:
    ``$INFERD_API_KEY``, if set) goes with every call as
    ``authorization: Bearer <key>``, for a daemon started with ``--api-key``
    or ``--admin-key``. For a daemon serving TLS (``--tls-cert``), give an
    ``https://`` address or ``tls_ca``: ``tls_ca`` is the CA certificate
    file (PEM) to trust (absent: the system's roots), ``tls_cert`` and
    ``tls_key`` a client certificate for a daemon that asks for one
    (``--tls-client-ca``).
    """

    def __init__(self, address: Optional[str] = None, *, timeout: Optional[float] = None,
                 api_key: Optional[str] = None, tls_ca: Optional[str] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None):
        given = address or os.environ.get("INFERD_ADDR") or DEFAULT_ADDRESS
        self.address = _address(address)
        self.timeout = timeout
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        if given.startswith("https://") or tls_ca or tls_cert:
            def read(path: Optional[str]) -> Optional[bytes]:
                if path is None:
                    return None
                with open(path, "rb") as f:
                    return f.read()

            credentials = grpc.ssl_channel_credentials(root_certificates=read(tls_ca), private_key=read(tls_key),
                                                       certificate_chain=read(tls_cert))
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=options)
        api_key = api_key if api_key is not None else os.environ.get("INFERD_API_KEY")
        if api_key:
            self._channel = grpc.intercept_channel(self._channel, _Bearer(api_key.strip()))
        self.inference = inference_pb2_grpc.InferenceStub(self._channel)
        self.models = models_pb2_grpc.ModelsStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, rpc: str, request: Any) -> Any:
        """Calls the unary RPC ``rpc`` ("Classify", "Run", "LoadModel", ...)
        with a request message from ``inferd.v1``; a refusal raises
        InferdError. (``GenerateStream`` streams: use a text-generation
        pipeline's ``stream()``.)"""
        if rpc in _MODELS_RPCS:
            stub = self.models
        elif rpc in _INFERENCE_RPCS:
            stub = self.inference
        else:
            raise ValueError(f"no RPC {rpc!r}; the daemon has {', '.join(sorted(_MODELS_RPCS | _INFERENCE_RPCS))}")
        try:
            return getattr(stub, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _refusal(e) from e

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
        also_tasks: Sequence[str] = (),
        **options: Any,
    ) -> Any:
        """Loads a model (hub id or local directory) for a task and returns
        its ModelInfo once it is ready. ``also_tasks``: further tasks it
        serves with the same weights (one copy), e.g. ``["translation"]``
        for a T5 loaded for summarization. ``options``: max_batch_size,
        max_queue_delay_ms, queue_size, intra_op_threads, ``limits``, the
        model's work budgets by name (``{"max_sequences": 64}``; the README's
        Limits table lists them), ``isolation`` ("process" or "in-process"),
        ``quantize`` ("dynamic-int8" for a text model's linear layers in int8
        on the CPU), ``dtype`` ("float32", "float16", "bfloat16" or "auto"),
        and for text-to-speech ``vocoder`` (a hub id or local
        directory; default microsoft/speecht5_hifigan)."""
        request = models_pb2.LoadModelRequest(
            name=name,
            source=source,
            revision=revision,
            task=task,
            devices=[devices] if isinstance(devices, str) else list(devices),
            instances=instances,
            make_default=make_default,
            options=models_pb2.ModelOptions(**options) if options else None,
            also_tasks=[also_tasks] if isinstance(also_tasks, str) else list(also_tasks),
        )
        return self.call("LoadModel", request)

    def unload_model(self, name: str) -> None:
        self.call("UnloadModel", models_pb2.UnloadModelRequest(name=name))

    def list_models(self) -> List[Any]:
        return list(self.call("ListModels", models_pb2.ListModelsRequest()).models)

    def get_model(self, name: str) -> Any:
        return self.call("GetModel", models_pb2.GetModelRequest(name=name))


def pipeline(task: str, model: Optional[str] = None, *, address: Optional[str] = None,
             timeout: Optional[float] = None, api_key: Optional[str] = None, tls_ca: Optional[str] = None,
             tls_cert: Optional[str] = None, tls_key: Optional[str] = None, **defaults: Any) -> "Pipeline":
    """``transformers.pipeline(task, model=...)``, answered by the daemon at
    ``address`` (absent: ``$INFERD_ADDR`` or ``localhost:50051``), with
    ``api_key`` (absent: ``$INFERD_API_KEY``) when it asks for one, and
    ``tls_*`` as ``Client`` takes them. The pipeline owns its connection:
    ``close()`` it, or use it in a ``with``."""
    client = Client(address, timeout=timeout, api_key=api_key, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    p = client.pipeline(task, model, **defaults)
    p._owns_client = True
    return p


class Pipeline:
    """One task on one model (or the task's default model); call it as
    you would call the pipeline transformers returns."""

    def __init__(self, client: Client, task: str, model: Optional[str], defaults: Dict[str, Any]):
        self.client = client
        self.task = task
        self.model = model or ""
        self._run, self._known = _task(task)
        # Arguments about running the model locally mean nothing here; any
        # other unknown one is refused now rather than at the first call.
        self.defaults = {k: v for k, v in defaults.items() if k not in _LOCAL_EXECUTION}
        _take(self.defaults, self._known + _EVERY_TASK, task)
        self._owns_client = False

    def __call__(self, inputs: Any = None, *args: Any, **kwargs: Any) -> Any:
        merged = {**self.defaults, **kwargs}
        _take(merged, self._known + _EVERY_TASK, self.task)
        merged.pop("batch_size", None)  # the daemon batches requests itself
        if self._run not in _TRUNCATING and _truncation(merged.pop("truncation", None)) is False:
            raise ValueError(f"{self.task}: inferd cuts inputs longer than a model's maximum, as truncation=True does")
        if isinstance(inputs, list) and not inputs:
            return []
        try:
            return self._run(self, inputs, args, merged, dict(kwargs))
        except ValueError as e:
            raise _naming_the_argument(e, merged) from None

    def stream(self, inputs: Any, **kwargs: Any) -> Iterable[Any]:
        """As the daemon produces it, for one input:
        text-generation: the new text of a prompt, piece by piece
        (GenerateStream);
        automatic-speech-recognition: the segments of an audio file, each
        ``{"text": ..., "timestamp": (start, end)}``, as soon as its 30 s
        window is decoded (TranscribeStream; Whisper).
        Stopping the iteration early cancels the work."""
        merged = {**self.defaults, **kwargs}
        _take(merged, self._known + _EVERY_TASK, self.task)
        if self._run is _text_generation:
            try:
                request = _generate_request(self, [inputs], merged)
            except ValueError as e:
                raise _naming_the_argument(e, merged) from None
            responses = self.client.inference.GenerateStream(request, timeout=self.client.timeout)
            pieces = (r.text for r in responses if r.text)
        elif self._run is _speech_recognition:
            try:
                request = _transcribe_request(self, [inputs], merged)
            except ValueError as e:
                raise _naming_the_argument(e, merged) from None
            responses = self.client.inference.TranscribeStream(request, timeout=self.client.timeout)
            pieces = ({"text": c.text, "timestamp": tuple(c.timestamp)}
                      for r in responses for c in r.segments)
        else:
            raise TypeError(f"{self.task}: stream() is for text-generation and automatic-speech-recognition")
        try:
            yield from pieces
        except grpc.RpcError as e:
            raise _refusal(e) from e
        finally:
            responses.cancel()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task!r}, model={self.model or '<default>'!r}, address={self.client.address!r})"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


# Accepted by every task: the daemon batches requests itself; `truncation`
# goes to the daemon for the tasks whose requests have it (_TRUNCATING), and
# the others always cut inputs longer than a model's maximum.
_EVERY_TASK = ("batch_size", "truncation")


def _truncation(value: Any) -> Optional[bool]:
    """pipeline()'s truncation (a bool or a strategy name) as the daemon's
    flag; None when not given."""
    if value is None:
        return None
    if isinstance(value, str):
        return value != "do_not_truncate"
    return bool(value)


def _set_truncation(request: Any, kw: Dict[str, Any]) -> None:
    flag = _truncation(kw.get("truncation"))
    if flag is not None:
        request.truncation = flag


def _take(kwargs: Dict[str, Any], known: Iterable[str], task: str) -> Dict[str, Any]:
    """The keyword arguments, after checking that the task knows each one."""
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"{task}: unexpected argument(s) {', '.join(unknown)} (accepted: {', '.join(sorted(known))})")
    return kwargs


def _name(value: Any) -> str:
    """A setting given as a string or as one of transformers' enums."""
    return str(getattr(value, "value", value) or "")


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
        # As transformers' load_image: EXIF orientation applied, then RGB
        # (PNG keeps no EXIF for the daemon to apply).
        from PIL import ImageOps

        out = io.BytesIO()
        ImageOps.exif_transpose(item).convert("RGB").save(out, format="PNG")
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
        if getattr(samples, "ndim", 1) != 1:
            raise ValueError("audio samples must be one channel (a 1-D array); average the channels first")
        if hasattr(samples, "tolist"):
            samples = samples.tolist()
        return _float_wav(samples, int(rate))
    if hasattr(item, "tolist"):
        raise TypeError('pass audio samples as {"raw": samples, "sampling_rate": hz}: the rate is needed')
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
    # every label, top_k=k the best k, as lists. The deprecated
    # return_all_scores=True gives every label in the model's order.
    legacy = "top_k" not in kw
    top_k = kw.get("top_k", 1)
    all_scores = kw.get("return_all_scores")
    if isinstance(all_scores, bool):
        warnings.warn("`return_all_scores` is now deprecated,  if want a similar functionality use `top_k=None` "
                      "instead of `return_all_scores=True` or `top_k=1` instead of `return_all_scores=False`.",
                      UserWarning, stacklevel=3)
        if all_scores and legacy:
            return _all_scores_in_label_order(p, messages, inputs)
    request = api.ClassifyRequest(
        model=p.model,
        inputs=messages,
        # The daemon's 0 means every label, as top_k=None does here.
        top_k=1 if legacy else (0 if top_k is None else max(int(top_k), 1)),
        function_to_apply=_name(kw.get("function_to_apply")),
    )
    _set_truncation(request, kw)
    results = p.client.call("Classify", request).results
    per_input = [(_scores(r.labels)[0] if legacy else _scores(r.labels)[: top_k and int(top_k)])
                 for r in results]
    if _many(inputs):
        return per_input
    if isinstance(inputs, str) and "top_k" not in asked:
        return [per_input[0]]
    return per_input[0]


def _all_scores_in_label_order(p: Pipeline, messages: List[Any], inputs: Any) -> Any:
    """return_all_scores=True: every label's score, in the model's label
    order, a list per input (also for one string, as pipeline() wraps it)."""
    request = api.ClassifyRequest(model=p.model, inputs=messages, top_k=0)
    results = p.client.call("Classify", request).results
    order = _model_labels(p)
    rank = {label: i for i, label in enumerate(order)}
    per_input = [sorted(_scores(r.labels), key=lambda s: rank.get(s["label"], len(rank))) for r in results]
    return per_input if _many(inputs) or isinstance(inputs, str) else per_input[0]


def _model_labels(p: Pipeline) -> List[str]:
    """The labels of the pipeline's model (or its task's default), in
    id order."""
    for m in p.client.list_models():
        if (m.name == p.model) if p.model else (m.task == _ALIASES.get(p.task, p.task) and m.is_default):
            return list(m.labels)
    return []


def _zero_shot(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    if args:
        if len(args) > 1 or "candidate_labels" in kw:
            raise TypeError("zero-shot-classification takes candidate_labels once (second argument or keyword)")
        kw = {**kw, "candidate_labels": args[0]}
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
    targets = kw.get("targets") or []
    if isinstance(targets, str):
        targets = [targets]
    request = api.FillMaskRequest(model=p.model, inputs=_texts(inputs, p.task), targets=list(targets))
    _set_truncation(request, kw)
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


def _aggregation_strategy(kw: Dict[str, Any]) -> str:
    """aggregation_strategy, or what the deprecated grouped_entities /
    ignore_subwords ask for, with transformers 4.57.6's warning."""
    strategy = (_name(kw.get("aggregation_strategy")) or "none").lower()
    grouped, ignore_subwords = kw.get("grouped_entities"), kw.get("ignore_subwords")
    if grouped is None and ignore_subwords is None:
        return strategy
    if grouped and ignore_subwords:
        strategy = "first"
    elif grouped:
        strategy = "simple"
    else:
        strategy = "none"
    if grouped is not None:
        warnings.warn(f'`grouped_entities` is deprecated and will be removed in version v5.0.0, defaulted to '
                      f'`aggregation_strategy="{strategy}"` instead.', UserWarning, stacklevel=4)
    if ignore_subwords is not None:
        warnings.warn(f'`ignore_subwords` is deprecated and will be removed in version v5.0.0, defaulted to '
                      f'`aggregation_strategy="{strategy}"` instead.', UserWarning, stacklevel=4)
    return strategy


def _token_classification(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = api.ClassifyTokensRequest(
        model=p.model,
        inputs=_texts(inputs, p.task),
        aggregation_strategy=_aggregation_strategy(kw),
    )
    ignore = kw.get("ignore_labels")
    if ignore is not None:
        request.ignore_labels.CopyFrom(api.StringList(values=[ignore] if isinstance(ignore, str) else list(ignore)))
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
    # The forms QuestionAnsweringArgumentHandler takes.
    if question is not None or context is not None:
        if question is None or context is None:
            raise TypeError("question-answering needs both question= and context=")
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError("question and context lists must have the same length")
            examples = [{"question": q, "context": c} for q, c in zip(question, context)]
        elif isinstance(question, list):
            examples = [{"question": q, "context": context} for q in question]
        elif isinstance(context, list):
            raise ValueError("one question for several contexts: give question= as a list too")
        else:
            examples = [{"question": question, "context": context}]
    elif isinstance(inputs, str) and len(args) == 1 and isinstance(args[0], str):
        examples = [{"question": inputs, "context": args[0]}]
    elif isinstance(inputs, dict):
        examples = [inputs, *args]
    else:
        examples = _as_list(inputs)
    if not examples or any(not isinstance(e, dict) or not isinstance(e.get("question"), str)
                           or not isinstance(e.get("context"), str) for e in examples):
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
    request = api.EmbedRequest(model=p.model, inputs=_texts(inputs, p.task), pooling="none",
                               return_token_embeddings=True)
    _set_truncation(request, kw)
    # pipeline() keeps the batch dimension of 1: [1][tokens][hidden] per text.
    per_input = [[[list(v.values) for v in r.token_embeddings]] for r in p.client.call("Embed", request).results]
    return per_input if _many(inputs) else per_input[0]


# GenerateRequest's settings, by how their values convert.
_GENERATE_INTS = ("max_new_tokens", "max_length", "min_new_tokens", "top_k", "no_repeat_ngram_size",
                  "num_return_sequences", "seed")
_GENERATE_FLOATS = ("temperature", "top_p", "repetition_penalty")
_GENERATE_BOOLS = ("do_sample", "return_full_text")
# stop_sequence is transformers' name for a stop string; pad_token_id does
# not change the text.
_GENERATE_SETTINGS = _GENERATE_INTS + _GENERATE_FLOATS + _GENERATE_BOOLS + ("stop", "stop_sequence", "pad_token_id")


def _generate_request(p: Pipeline, prompts: List[str], kw: Dict[str, Any]) -> Any:
    request = api.GenerateRequest(model=p.model, inputs=prompts)
    for key, convert in [(k, int) for k in _GENERATE_INTS] + [(k, float) for k in _GENERATE_FLOATS] + \
            [(k, bool) for k in _GENERATE_BOOLS]:
        if kw.get(key) is not None:
            setattr(request, key, convert(kw[key]))
    for key in ("stop", "stop_sequence"):
        value = kw.get(key)
        if value:
            request.stop.extend([value] if isinstance(value, str) else list(value))
    return request


def _text_generation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = _generate_request(p, _texts(inputs, p.task), kw)
    per_input = [[{"generated_text": s.generated_text} for s in r.sequences]
                 for r in p.client.call("Generate", request).results]
    return per_input if _many(inputs) else per_input[0]


# do_sample=False and return_text=True are what the daemon does anyway.
_SEQ2SEQ_SETTINGS = ("min_length", "max_length", "max_new_tokens", "num_beams", "length_penalty",
                     "early_stopping", "no_repeat_ngram_size", "num_return_sequences", "do_sample", "return_text")


def _seq2seq(p: Pipeline, inputs: Any, kw: Dict[str, Any], rpc: str, request: Any, key: str) -> Any:
    if kw.get("do_sample"):
        raise ValueError(f"{p.task}: inferd decodes greedily or by beam search (do_sample=False)")
    if kw.get("return_text") is False:
        raise ValueError(f"{p.task}: inferd returns texts (return_text=True)")
    request.model = p.model
    request.inputs.extend(_texts(inputs, p.task))
    for name in ("min_length", "max_length", "max_new_tokens", "num_beams", "no_repeat_ngram_size",
                 "num_return_sequences"):
        if kw.get(name) is not None:
            setattr(request, name, int(kw[name]))
    if kw.get("length_penalty") is not None:
        request.length_penalty = float(kw["length_penalty"])
    request.early_stopping = _early_stopping(kw.get("early_stopping"))
    _set_truncation(request, kw)
    field = "summaries" if rpc == "Summarize" else "translations"
    per_input = [[{key: getattr(t, key)} for t in getattr(r, field)] for r in p.client.call(rpc, request).results]
    if not _many(inputs):
        return per_input[0]
    # One record per input: a flat list, as pipeline() flattens it.
    if all(len(records) == 1 for records in per_input):
        return [records[0] for records in per_input]
    return per_input


def _summarization(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    return _seq2seq(p, inputs, kw, "Summarize", api.SummarizeRequest(), "summary_text")


def _translation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    src, tgt = kw.get("src_lang") or "", kw.get("tgt_lang") or ""
    # pipeline("translation_en_to_fr") names its direction.
    if p.task.startswith("translation_") and "_to_" in p.task and not (src or tgt):
        src, tgt = p.task[len("translation_"):].split("_to_", 1)
    request = api.TranslateRequest(src_lang=src, tgt_lang=tgt)
    return _seq2seq(p, inputs, kw, "Translate", request, "translation_text")


def _image_classification(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = api.ClassifyImageRequest(
        model=p.model,
        inputs=[api.ImageInput(data=_image_bytes(i)) for i in _as_list(inputs)],
        function_to_apply=_name(kw.get("function_to_apply")),
    )
    top_k = kw.get("top_k")
    if top_k is not None:
        # The daemon's 0 means every label; transformers' 0 means none.
        request.top_k = max(int(top_k), 1)
    per_input = [_scores(r.labels)[: None if top_k is None else int(top_k)]
                 for r in p.client.call("ClassifyImage", request).results]
    return per_input if _many(inputs) else per_input[0]


def _object_detection(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = api.DetectObjectsRequest(
        model=p.model,
        inputs=[api.ImageInput(data=_image_bytes(i)) for i in _as_list(inputs)],
    )
    if kw.get("threshold") is not None:
        request.threshold = float(kw["threshold"])

    def record(o: Any) -> Dict[str, Any]:
        box = {"xmin": o.box.xmin, "ymin": o.box.ymin, "xmax": o.box.xmax, "ymax": o.box.ymax}
        return {"score": o.score, "label": o.label, "box": box}

    per_input = [[record(o) for o in r.objects] for r in p.client.call("DetectObjects", request).results]
    return per_input if _many(inputs) else per_input[0]


def _depth_record(m: Any) -> Dict[str, Any]:
    # pipeline() gives a torch tensor and a PIL image; without torch or PIL
    # installed, the client gives the nearest it can: a NumPy array (or
    # rows of floats) and the PNG's bytes.
    values: Any = None
    try:
        import numpy

        values = numpy.asarray(m.predicted_depth, dtype=numpy.float32).reshape(m.height, m.width)
        import torch

        values = torch.from_numpy(values)
    except ImportError:
        if values is None:
            flat = list(m.predicted_depth)
            values = [flat[r * m.width:(r + 1) * m.width] for r in range(m.height)]
    depth: Any = bytes(m.depth)
    try:
        from PIL import Image

        depth = Image.open(io.BytesIO(m.depth))
        depth.load()
    except ImportError:
        pass
    return {"predicted_depth": values, "depth": depth}


def _depth_estimation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = api.EstimateDepthRequest(
        model=p.model,
        inputs=[api.ImageInput(data=_image_bytes(i)) for i in _as_list(inputs)],
    )
    per_input = [_depth_record(m) for m in p.client.call("EstimateDepth", request).results]
    return per_input if _many(inputs) else per_input[0]


def _image_segmentation(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = api.SegmentImageRequest(
        model=p.model,
        inputs=[api.ImageInput(data=_image_bytes(i)) for i in _as_list(inputs)],
        subtask=kw.get("subtask") or "",
    )
    for name in ("threshold", "mask_threshold", "overlap_mask_area_threshold"):
        if kw.get(name) is not None:
            setattr(request, name, float(kw[name]))
    # Not a pipeline() argument (its post-processing's): panoptic fusing.
    request.label_ids_to_fuse.extend(int(i) for i in kw.get("label_ids_to_fuse") or ())

    def record(s: Any) -> Dict[str, Any]:
        # pipeline() gives a PIL image; without PIL, the PNG's bytes.
        mask: Any = bytes(s.mask)
        try:
            from PIL import Image

            mask = Image.open(io.BytesIO(s.mask))
            mask.load()
        except ImportError:
            pass
        return {"score": s.score if s.HasField("score") else None, "label": s.label, "mask": mask}

    per_input = [[record(s) for s in r.segments] for r in p.client.call("SegmentImage", request).results]
    return per_input if _many(inputs) else per_input[0]


def _transcription_chunk(c: Any, timestamps: bool, language: bool) -> Dict[str, Any]:
    # pipeline() gives a chunk's times with timestamps (None where Whisper's
    # last segment has no end) and its language with return_language.
    chunk: Dict[str, Any] = {"language": c.language or None} if language else {}
    chunk["text"] = c.text
    if timestamps:
        chunk["timestamp"] = tuple(list(c.timestamp) + [None] * (2 - len(c.timestamp)))
    return chunk


_WHISPER_SETTINGS = ("language", "task", "num_beams", "temperature", "max_new_tokens", "seed")


def _transcribe_request(p: Pipeline, inputs: List[Any], kw: Dict[str, Any]) -> Any:
    request = api.TranscribeRequest(
        model=p.model,
        inputs=[api.AudioInput(data=_audio_bytes(i)) for i in inputs],
    )
    stamps = kw.get("return_timestamps")
    if stamps:
        # pipeline()'s return_timestamps=True (Whisper's segments) is "true".
        request.return_timestamps = "true" if stamps is True else str(stamps)
    # Whisper's settings, given directly or in generate_kwargs as pipeline() takes them.
    whisper = {**(kw.get("generate_kwargs") or {}), **{k: kw[k] for k in _WHISPER_SETTINGS if k in kw}}
    unknown = set(whisper) - set(_WHISPER_SETTINGS)
    if unknown:
        raise TypeError(f"automatic-speech-recognition does not take generate_kwargs {sorted(unknown)}")
    for name in ("language", "task"):
        if whisper.get(name) is not None:
            setattr(request, name, str(whisper[name]))
    for name in ("num_beams", "max_new_tokens", "seed"):
        if whisper.get(name) is not None:
            setattr(request, name, int(whisper[name]))
    if whisper.get("temperature") is not None:
        request.temperature = float(whisper["temperature"])
    if kw.get("return_language"):
        request.return_language = True
    if kw.get("chunk_length_s") is not None:
        request.chunk_length_s = float(kw["chunk_length_s"])
    stride = kw.get("stride_length_s")
    if stride is not None:
        request.stride_length_s.extend([float(s) for s in stride] if isinstance(stride, (list, tuple))
                                       else [float(stride)])
    return request


def _speech_recognition(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    request = _transcribe_request(p, _as_list(inputs), kw)
    stamps = kw.get("return_timestamps")
    per_input = []
    for r in p.client.call("Transcribe", request).results:
        out: Dict[str, Any] = {"text": r.text}
        if stamps or kw.get("return_language"):
            out["chunks"] = [_transcription_chunk(c, bool(stamps), bool(kw.get("return_language")))
                             for c in r.chunks]
        per_input.append(out)
    return per_input if _many(inputs) else per_input[0]


def _floats(value: Any) -> List[float]:
    """A tensor, array or (nested) list of numbers, flattened."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    if hasattr(value, "tolist"):
        value = value.tolist()
    out: List[float] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            out.append(float(item))
    return out


def _text_to_speech(p: Pipeline, inputs: Any, args: tuple, kw: Dict[str, Any], asked: Dict[str, Any]) -> Any:
    # pipeline(text, forward_params={"speaker_embeddings": ...}) as for
    # SpeechT5, plus inferd's `speaker` (a name the model ships) and `seed`
    # (what torch.manual_seed before pipeline() does).
    forward = dict(kw.get("forward_params") or {})
    forward.update(kw.get("generate_kwargs") or {})
    preprocess = dict(kw.get("preprocess_params") or {})
    unknown = sorted(set(forward) - {"speaker_embeddings", "threshold", "minlenratio", "maxlenratio"})
    unknown += sorted(set(preprocess) - {"normalize"})
    if unknown:
        raise TypeError(f"text-to-speech: unexpected parameter(s) {', '.join(unknown)}")
    request = api.SynthesizeRequest(
        model=p.model,
        inputs=_texts(inputs, "text-to-speech"),
        speaker=kw.get("speaker") or "",
        return_samples=True,
    )
    if forward.get("speaker_embeddings") is not None:
        request.speaker_embeddings.extend(_floats(forward["speaker_embeddings"]))
    for name in ("threshold", "minlenratio", "maxlenratio"):
        if forward.get(name) is not None:
            setattr(request, name, float(forward[name]))
    if preprocess.get("normalize") is not None:
        request.normalize = bool(preprocess["normalize"])
    if kw.get("seed") is not None:
        request.seed = int(kw["seed"])

    def record(s: Any) -> Dict[str, Any]:
        # pipeline() gives a float32 NumPy array; without NumPy, a list.
        audio: Any = list(s.samples)
        try:
            import numpy

            audio = numpy.asarray(s.samples, dtype=numpy.float32)
        except ImportError:
            pass
        return {"audio": audio, "sampling_rate": s.sampling_rate}

    per_input = [record(s) for s in p.client.call("Synthesize", request).results]
    return per_input if _many(inputs) else per_input[0]


_TaskFunction = Callable[[Pipeline, Any, tuple, Dict[str, Any], Dict[str, Any]], Any]

# Each task: its function and the keyword arguments it takes.
# The tasks whose requests carry `truncation`.
_TRUNCATING = (_classify, _fill_mask, _feature_extraction, _summarization, _translation)

_TASKS: Dict[str, Tuple[_TaskFunction, Tuple[str, ...]]] = {
    "text-classification": (_classify, ("top_k", "function_to_apply", "return_all_scores")),
    "zero-shot-classification": (_zero_shot, ("candidate_labels", "hypothesis_template", "multi_label")),
    "fill-mask": (_fill_mask, ("top_k", "targets")),
    "token-classification": (_token_classification, ("aggregation_strategy", "ignore_labels", "grouped_entities",
                                                     "ignore_subwords")),
    "question-answering": (_question_answering, ("question", "context") + _QA_SETTINGS),
    "feature-extraction": (_feature_extraction, ()),
    "text-generation": (_text_generation, _GENERATE_SETTINGS),
    "summarization": (_summarization, _SEQ2SEQ_SETTINGS),
    "translation": (_translation, _SEQ2SEQ_SETTINGS + ("src_lang", "tgt_lang")),
    "image-classification": (_image_classification, ("top_k", "function_to_apply")),
    "object-detection": (_object_detection, ("threshold",)),
    "depth-estimation": (_depth_estimation, ()),
    "image-segmentation": (_image_segmentation, ("subtask", "threshold", "mask_threshold",
                                                 "overlap_mask_area_threshold", "label_ids_to_fuse")),
    "automatic-speech-recognition": (_speech_recognition, ("return_timestamps", "chunk_length_s", "stride_length_s",
                                                           "return_language", "generate_kwargs")
                                     + _WHISPER_SETTINGS),
    "text-to-speech": (_text_to_speech, ("forward_params", "generate_kwargs", "preprocess_params", "speaker",
                                         "seed")),
}
_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
            "text-to-audio": "text-to-speech"}

_INFERENCE_RPCS = set(api.DESCRIPTOR.services_by_name["Inference"].methods_by_name)
_MODELS_RPCS = set(models_pb2.DESCRIPTOR.services_by_name["Models"].methods_by_name)


def _task(task: str) -> Tuple[_TaskFunction, Tuple[str, ...]]:
    name = _ALIASES.get(task, task)
    if name in _TASKS:
        return _TASKS[name]
    if task.startswith("translation_") and "_to_" in task:
        return _TASKS["translation"]
    raise ValueError(f"unknown task {task!r}; this client knows {', '.join(sorted([*_TASKS, *_ALIASES]))} "
                     "(and translation_XX_to_YY); custom plugin tasks go through Client.call('Run', ...)")
