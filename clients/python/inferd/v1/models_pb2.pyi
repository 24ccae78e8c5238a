from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
    MODEL_STATE_IDLE: _ClassVar[ModelState]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
MODEL_STATE_IDLE: ModelState

class LoadModelRequest(_message.Message):
    __slots__ = ("name", "source", "revision", "task", "devices", "instances", "make_default", "options", "also_tasks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MAKE_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ALSO_TASKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    revision: str
    task: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    instances: int
    make_default: bool
    options: ModelOptions
    also_tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., revision: _Optional[str] = ..., task: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., instances: _Optional[int] = ..., make_default: _Optional[bool] = ..., options: _Optional[_Union[ModelOptions, _Mapping]] = ..., also_tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelOptions(_message.Message):
    __slots__ = ("max_batch_size", "max_queue_delay_ms", "queue_size", "intra_op_threads", "limits", "vocoder", "isolation", "quantize", "dtype")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INTRA_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    VOCODER_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    QUANTIZE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    max_queue_delay_ms: int
    queue_size: int
    intra_op_threads: int
    limits: _containers.ScalarMap[str, int]
    vocoder: str
    isolation: str
    quantize: str
    dtype: str
    def __init__(self, max_batch_size: _Optional[int] = ..., max_queue_delay_ms: _Optional[int] = ..., queue_size: _Optional[int] = ..., intra_op_threads: _Optional[int] = ..., limits: _Optional[_Mapping[str, int]] = ..., vocoder: _Optional[str] = ..., isolation: _Optional[str] = ..., quantize: _Optional[str] = ..., dtype: _Optional[str] = ...) -> None: ...

class InstanceInfo(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: str
    def __init__(self, device: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "source", "path", "architecture", "plugin", "state", "instances", "memory_bytes", "error", "is_default", "labels", "options", "queue_depth", "speakers", "load_seconds", "warm_up_seconds", "also_tasks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WARM_UP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALSO_TASKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    source: str
    path: str
    architecture: str
    plugin: str
    state: ModelState
    instances: _containers.RepeatedCompositeFieldContainer[InstanceInfo]
    memory_bytes: int
    error: str
    is_default: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    options: ModelOptions
    queue_depth: int
    speakers: _containers.RepeatedScalarFieldContainer[str]
    load_seconds: float
    warm_up_seconds: float
    also_tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., source: _Optional[str] = ..., path: _Optional[str] = ..., architecture: _Optional[str] = ..., plugin: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., instances: _Optional[_Iterable[_Union[InstanceInfo, _Mapping]]] = ..., memory_bytes: _Optional[int] = ..., error: _Optional[str] = ..., is_default: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[ModelOptions, _Mapping]] = ..., queue_depth: _Optional[int] = ..., speakers: _Optional[_Iterable[str]] = ..., load_seconds: _Optional[float] = ..., warm_up_seconds: _Optional[float] = ..., also_tasks: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("name", "aliases", "default_model", "architectures", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    architectures: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ..., architectures: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class PluginInfo(_message.Message):
    __slots__ = ("name", "version", "path", "abi_version", "tasks", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ABI_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    path: str
    abi_version: int
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    description: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., path: _Optional[str] = ..., abi_version: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    def __init__(self, plugins: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ...) -> None: ...
