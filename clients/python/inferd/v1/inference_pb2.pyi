from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextInput(_message.Message):
    __slots__ = ("text", "text_pair")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_PAIR_FIELD_NUMBER: _ClassVar[int]
    text: str
    text_pair: str
    def __init__(self, text: _Optional[str] = ..., text_pair: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "inputs", "top_k", "function_to_apply", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_TO_APPLY_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[TextInput]
    top_k: int
    function_to_apply: str
    truncation: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TextInput, _Mapping]]] = ..., top_k: _Optional[int] = ..., function_to_apply: _Optional[str] = ..., truncation: _Optional[bool] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class ZeroShotClassifyRequest(_message.Message):
    __slots__ = ("model", "inputs", "candidate_labels", "hypothesis_template", "multi_label")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_LABELS_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    MULTI_LABEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    candidate_labels: _containers.RepeatedScalarFieldContainer[str]
    hypothesis_template: str
    multi_label: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., candidate_labels: _Optional[_Iterable[str]] = ..., hypothesis_template: _Optional[str] = ..., multi_label: _Optional[bool] = ...) -> None: ...

class ZeroShotResult(_message.Message):
    __slots__ = ("sequence", "labels", "scores")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    sequence: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, sequence: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class ZeroShotClassifyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ZeroShotResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ZeroShotResult, _Mapping]]] = ...) -> None: ...

class FillMaskRequest(_message.Message):
    __slots__ = ("model", "inputs", "top_k", "targets", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    targets: _containers.RepeatedScalarFieldContainer[str]
    truncation: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., targets: _Optional[_Iterable[str]] = ..., truncation: _Optional[bool] = ...) -> None: ...

class FillMaskCandidate(_message.Message):
    __slots__ = ("score", "token", "token_str", "sequence")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_STR_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    score: float
    token: int
    token_str: str
    sequence: str
    def __init__(self, score: _Optional[float] = ..., token: _Optional[int] = ..., token_str: _Optional[str] = ..., sequence: _Optional[str] = ...) -> None: ...

class MaskPredictions(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[FillMaskCandidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[FillMaskCandidate, _Mapping]]] = ...) -> None: ...

class FillMaskResult(_message.Message):
    __slots__ = ("masks",)
    MASKS_FIELD_NUMBER: _ClassVar[int]
    masks: _containers.RepeatedCompositeFieldContainer[MaskPredictions]
    def __init__(self, masks: _Optional[_Iterable[_Union[MaskPredictions, _Mapping]]] = ...) -> None: ...

class FillMaskResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FillMaskResult]
    def __init__(self, results: _Optional[_Iterable[_Union[FillMaskResult, _Mapping]]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class ClassifyTokensRequest(_message.Message):
    __slots__ = ("model", "inputs", "aggregation_strategy", "ignore_labels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    IGNORE_LABELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    aggregation_strategy: str
    ignore_labels: StringList
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., aggregation_strategy: _Optional[str] = ..., ignore_labels: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class TokenEntity(_message.Message):
    __slots__ = ("entity", "entity_group", "score", "index", "word", "start", "end")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_GROUP_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    entity: str
    entity_group: str
    score: float
    index: int
    word: str
    start: int
    end: int
    def __init__(self, entity: _Optional[str] = ..., entity_group: _Optional[str] = ..., score: _Optional[float] = ..., index: _Optional[int] = ..., word: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class TokenClassification(_message.Message):
    __slots__ = ("entities",)
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[TokenEntity]
    def __init__(self, entities: _Optional[_Iterable[_Union[TokenEntity, _Mapping]]] = ...) -> None: ...

class ClassifyTokensResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TokenClassification]
    def __init__(self, results: _Optional[_Iterable[_Union[TokenClassification, _Mapping]]] = ...) -> None: ...

class QuestionInput(_message.Message):
    __slots__ = ("question", "context")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    question: str
    context: str
    def __init__(self, question: _Optional[str] = ..., context: _Optional[str] = ...) -> None: ...

class AnswerQuestionRequest(_message.Message):
    __slots__ = ("model", "inputs", "top_k", "doc_stride", "max_answer_len", "max_seq_len", "max_question_len", "handle_impossible_answer", "align_to_words")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    DOC_STRIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_ANSWER_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_QUESTION_LEN_FIELD_NUMBER: _ClassVar[int]
    HANDLE_IMPOSSIBLE_ANSWER_FIELD_NUMBER: _ClassVar[int]
    ALIGN_TO_WORDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[QuestionInput]
    top_k: int
    doc_stride: int
    max_answer_len: int
    max_seq_len: int
    max_question_len: int
    handle_impossible_answer: bool
    align_to_words: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[QuestionInput, _Mapping]]] = ..., top_k: _Optional[int] = ..., doc_stride: _Optional[int] = ..., max_answer_len: _Optional[int] = ..., max_seq_len: _Optional[int] = ..., max_question_len: _Optional[int] = ..., handle_impossible_answer: _Optional[bool] = ..., align_to_words: _Optional[bool] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("score", "start", "end", "answer")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    score: float
    start: int
    end: int
    answer: str
    def __init__(self, score: _Optional[float] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., answer: _Optional[str] = ...) -> None: ...

class AnswerResult(_message.Message):
    __slots__ = ("answers",)
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    def __init__(self, answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ...) -> None: ...

class AnswerQuestionResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AnswerResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AnswerResult, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "inputs", "pooling", "normalize", "return_token_embeddings", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    RETURN_TOKEN_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    pooling: str
    normalize: bool
    return_token_embeddings: bool
    truncation: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., pooling: _Optional[str] = ..., normalize: _Optional[bool] = ..., return_token_embeddings: _Optional[bool] = ..., truncation: _Optional[bool] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("embedding", "token_embeddings")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    token_embeddings: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, embedding: _Optional[_Iterable[float]] = ..., token_embeddings: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, results: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "inputs", "max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences", "seed", "stop", "return_full_text")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MIN_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DO_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    NO_REPEAT_NGRAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURN_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    RETURN_FULL_TEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    max_new_tokens: int
    max_length: int
    min_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    num_return_sequences: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    return_full_text: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., max_new_tokens: _Optional[int] = ..., max_length: _Optional[int] = ..., min_new_tokens: _Optional[int] = ..., do_sample: _Optional[bool] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., repetition_penalty: _Optional[float] = ..., no_repeat_ngram_size: _Optional[int] = ..., num_return_sequences: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., return_full_text: _Optional[bool] = ...) -> None: ...

class GeneratedSequence(_message.Message):
    __slots__ = ("generated_text", "finish_reason", "prompt_tokens", "generated_tokens", "token_ids")
    GENERATED_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    generated_text: str
    finish_reason: str
    prompt_tokens: int
    generated_tokens: int
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, generated_text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., token_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateResult(_message.Message):
    __slots__ = ("sequences",)
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequences: _containers.RepeatedCompositeFieldContainer[GeneratedSequence]
    def __init__(self, sequences: _Optional[_Iterable[_Union[GeneratedSequence, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GenerateResult]
    def __init__(self, results: _Optional[_Iterable[_Union[GenerateResult, _Mapping]]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("token_ids", "text", "finish_reason", "prompt_tokens", "generated_tokens", "generated_text")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TEXT_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    generated_tokens: int
    generated_text: str
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., text: _Optional[str] = ..., finish_reason: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., generated_text: _Optional[str] = ...) -> None: ...

class ImageInput(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ClassifyImageRequest(_message.Message):
    __slots__ = ("model", "inputs", "top_k", "function_to_apply")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_TO_APPLY_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[ImageInput]
    top_k: int
    function_to_apply: str
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., top_k: _Optional[int] = ..., function_to_apply: _Optional[str] = ...) -> None: ...

class ClassifyImageResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class DetectObjectsRequest(_message.Message):
    __slots__ = ("model", "inputs", "threshold")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[ImageInput]
    threshold: float
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., threshold: _Optional[float] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("xmin", "ymin", "xmax", "ymax")
    XMIN_FIELD_NUMBER: _ClassVar[int]
    YMIN_FIELD_NUMBER: _ClassVar[int]
    XMAX_FIELD_NUMBER: _ClassVar[int]
    YMAX_FIELD_NUMBER: _ClassVar[int]
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    def __init__(self, xmin: _Optional[int] = ..., ymin: _Optional[int] = ..., xmax: _Optional[int] = ..., ymax: _Optional[int] = ...) -> None: ...

class DetectedObject(_message.Message):
    __slots__ = ("score", "label", "box")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    score: float
    label: str
    box: BoundingBox
    def __init__(self, score: _Optional[float] = ..., label: _Optional[str] = ..., box: _Optional[_Union[BoundingBox, _Mapping]] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[DetectedObject]
    def __init__(self, objects: _Optional[_Iterable[_Union[DetectedObject, _Mapping]]] = ...) -> None: ...

class DetectObjectsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Detections]
    def __init__(self, results: _Optional[_Iterable[_Union[Detections, _Mapping]]] = ...) -> None: ...

class EstimateDepthRequest(_message.Message):
    __slots__ = ("model", "inputs", "png16")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PNG16_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[ImageInput]
    png16: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., png16: _Optional[bool] = ...) -> None: ...

class DepthMap(_message.Message):
    __slots__ = ("width", "height", "predicted_depth", "depth", "depth16")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEPTH16_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    predicted_depth: _containers.RepeatedScalarFieldContainer[float]
    depth: bytes
    depth16: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., predicted_depth: _Optional[_Iterable[float]] = ..., depth: _Optional[bytes] = ..., depth16: _Optional[bytes] = ...) -> None: ...

class EstimateDepthResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DepthMap]
    def __init__(self, results: _Optional[_Iterable[_Union[DepthMap, _Mapping]]] = ...) -> None: ...

class SegmentImageRequest(_message.Message):
    __slots__ = ("model", "inputs", "subtask", "threshold", "mask_threshold", "overlap_mask_area_threshold", "return_label_map", "label_ids_to_fuse")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MASK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_MASK_AREA_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_LABEL_MAP_FIELD_NUMBER: _ClassVar[int]
    LABEL_IDS_TO_FUSE_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[ImageInput]
    subtask: str
    threshold: float
    mask_threshold: float
    overlap_mask_area_threshold: float
    return_label_map: bool
    label_ids_to_fuse: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., subtask: _Optional[str] = ..., threshold: _Optional[float] = ..., mask_threshold: _Optional[float] = ..., overlap_mask_area_threshold: _Optional[float] = ..., return_label_map: _Optional[bool] = ..., label_ids_to_fuse: _Optional[_Iterable[int]] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("score", "label", "mask", "id")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    score: float
    label: str
    mask: bytes
    id: int
    def __init__(self, score: _Optional[float] = ..., label: _Optional[str] = ..., mask: _Optional[bytes] = ..., id: _Optional[int] = ...) -> None: ...

class Segmentation(_message.Message):
    __slots__ = ("segments", "label_map")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_MAP_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    label_map: bytes
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., label_map: _Optional[bytes] = ...) -> None: ...

class SegmentImageResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Segmentation]
    def __init__(self, results: _Optional[_Iterable[_Union[Segmentation, _Mapping]]] = ...) -> None: ...

class SummarizeRequest(_message.Message):
    __slots__ = ("model", "inputs", "min_length", "max_length", "max_new_tokens", "num_beams", "length_penalty", "early_stopping", "no_repeat_ngram_size", "num_return_sequences", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_BEAMS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    NO_REPEAT_NGRAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURN_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    min_length: int
    max_length: int
    max_new_tokens: int
    num_beams: int
    length_penalty: float
    early_stopping: str
    no_repeat_ngram_size: int
    num_return_sequences: int
    truncation: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., num_beams: _Optional[int] = ..., length_penalty: _Optional[float] = ..., early_stopping: _Optional[str] = ..., no_repeat_ngram_size: _Optional[int] = ..., num_return_sequences: _Optional[int] = ..., truncation: _Optional[bool] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("summary_text",)
    SUMMARY_TEXT_FIELD_NUMBER: _ClassVar[int]
    summary_text: str
    def __init__(self, summary_text: _Optional[str] = ...) -> None: ...

class Summaries(_message.Message):
    __slots__ = ("summaries",)
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[Summary]
    def __init__(self, summaries: _Optional[_Iterable[_Union[Summary, _Mapping]]] = ...) -> None: ...

class SummarizeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Summaries]
    def __init__(self, results: _Optional[_Iterable[_Union[Summaries, _Mapping]]] = ...) -> None: ...

class TranslateRequest(_message.Message):
    __slots__ = ("model", "inputs", "src_lang", "tgt_lang", "min_length", "max_length", "max_new_tokens", "num_beams", "length_penalty", "early_stopping", "no_repeat_ngram_size", "num_return_sequences", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SRC_LANG_FIELD_NUMBER: _ClassVar[int]
    TGT_LANG_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_BEAMS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    NO_REPEAT_NGRAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURN_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    src_lang: str
    tgt_lang: str
    min_length: int
    max_length: int
    max_new_tokens: int
    num_beams: int
    length_penalty: float
    early_stopping: str
    no_repeat_ngram_size: int
    num_return_sequences: int
    truncation: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., src_lang: _Optional[str] = ..., tgt_lang: _Optional[str] = ..., min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., num_beams: _Optional[int] = ..., length_penalty: _Optional[float] = ..., early_stopping: _Optional[str] = ..., no_repeat_ngram_size: _Optional[int] = ..., num_return_sequences: _Optional[int] = ..., truncation: _Optional[bool] = ...) -> None: ...

class Translation(_message.Message):
    __slots__ = ("translation_text",)
    TRANSLATION_TEXT_FIELD_NUMBER: _ClassVar[int]
    translation_text: str
    def __init__(self, translation_text: _Optional[str] = ...) -> None: ...

class Translations(_message.Message):
    __slots__ = ("translations",)
    TRANSLATIONS_FIELD_NUMBER: _ClassVar[int]
    translations: _containers.RepeatedCompositeFieldContainer[Translation]
    def __init__(self, translations: _Optional[_Iterable[_Union[Translation, _Mapping]]] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Translations]
    def __init__(self, results: _Optional[_Iterable[_Union[Translations, _Mapping]]] = ...) -> None: ...

class AudioInput(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class TranscribeRequest(_message.Message):
    __slots__ = ("model", "inputs", "return_timestamps", "chunk_length_s", "stride_length_s", "language", "task", "return_language", "num_beams", "temperature", "max_new_tokens", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RETURN_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_S_FIELD_NUMBER: _ClassVar[int]
    STRIDE_LENGTH_S_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RETURN_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NUM_BEAMS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[AudioInput]
    return_timestamps: str
    chunk_length_s: float
    stride_length_s: _containers.RepeatedScalarFieldContainer[float]
    language: str
    task: str
    return_language: bool
    num_beams: int
    temperature: float
    max_new_tokens: int
    seed: int
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[AudioInput, _Mapping]]] = ..., return_timestamps: _Optional[str] = ..., chunk_length_s: _Optional[float] = ..., stride_length_s: _Optional[_Iterable[float]] = ..., language: _Optional[str] = ..., task: _Optional[str] = ..., return_language: _Optional[bool] = ..., num_beams: _Optional[int] = ..., temperature: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class TranscriptionChunk(_message.Message):
    __slots__ = ("text", "timestamp", "language")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    timestamp: _containers.RepeatedScalarFieldContainer[float]
    language: str
    def __init__(self, text: _Optional[str] = ..., timestamp: _Optional[_Iterable[float]] = ..., language: _Optional[str] = ...) -> None: ...

class Transcription(_message.Message):
    __slots__ = ("text", "chunks")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    text: str
    chunks: _containers.RepeatedCompositeFieldContainer[TranscriptionChunk]
    def __init__(self, text: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[TranscriptionChunk, _Mapping]]] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Transcription]
    def __init__(self, results: _Optional[_Iterable[_Union[Transcription, _Mapping]]] = ...) -> None: ...

class TranscribeStreamResponse(_message.Message):
    __slots__ = ("segments", "text", "done", "result")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[TranscriptionChunk]
    text: str
    done: bool
    result: Transcription
    def __init__(self, segments: _Optional[_Iterable[_Union[TranscriptionChunk, _Mapping]]] = ..., text: _Optional[str] = ..., done: _Optional[bool] = ..., result: _Optional[_Union[Transcription, _Mapping]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("model", "inputs", "speaker", "speaker_embeddings", "seed", "audio_format", "return_samples", "normalize", "threshold", "minlenratio", "maxlenratio", "return_spectrogram")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    RETURN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MINLENRATIO_FIELD_NUMBER: _ClassVar[int]
    MAXLENRATIO_FIELD_NUMBER: _ClassVar[int]
    RETURN_SPECTROGRAM_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    speaker: str
    speaker_embeddings: _containers.RepeatedScalarFieldContainer[float]
    seed: int
    audio_format: str
    return_samples: bool
    normalize: bool
    threshold: float
    minlenratio: float
    maxlenratio: float
    return_spectrogram: bool
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., speaker: _Optional[str] = ..., speaker_embeddings: _Optional[_Iterable[float]] = ..., seed: _Optional[int] = ..., audio_format: _Optional[str] = ..., return_samples: _Optional[bool] = ..., normalize: _Optional[bool] = ..., threshold: _Optional[float] = ..., minlenratio: _Optional[float] = ..., maxlenratio: _Optional[float] = ..., return_spectrogram: _Optional[bool] = ...) -> None: ...

class Speech(_message.Message):
    __slots__ = ("audio", "sampling_rate", "samples", "seed", "spectrogram", "num_mel_bins", "duration_s")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SPECTROGRAM_FIELD_NUMBER: _ClassVar[int]
    NUM_MEL_BINS_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    sampling_rate: int
    samples: _containers.RepeatedScalarFieldContainer[float]
    seed: int
    spectrogram: _containers.RepeatedScalarFieldContainer[float]
    num_mel_bins: int
    duration_s: float
    def __init__(self, audio: _Optional[bytes] = ..., sampling_rate: _Optional[int] = ..., samples: _Optional[_Iterable[float]] = ..., seed: _Optional[int] = ..., spectrogram: _Optional[_Iterable[float]] = ..., num_mel_bins: _Optional[int] = ..., duration_s: _Optional[float] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Speech]
    def __init__(self, results: _Optional[_Iterable[_Union[Speech, _Mapping]]] = ...) -> None: ...

class RunInput(_message.Message):
    __slots__ = ("text", "data")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    text: str
    data: bytes
    def __init__(self, text: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("model", "task", "parameters", "inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: str
    parameters: _struct_pb2.Struct
    inputs: _containers.RepeatedCompositeFieldContainer[RunInput]
    def __init__(self, model: _Optional[str] = ..., task: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[RunInput, _Mapping]]] = ...) -> None: ...

class RunResult(_message.Message):
    __slots__ = ("output", "data")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    output: _struct_pb2.Struct
    data: bytes
    def __init__(self, output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RunResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RunResult, _Mapping]]] = ...) -> None: ...
