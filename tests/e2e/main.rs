//! End-to-end tests: each starts the real `inferd` binary, loads fixture
//! models and calls it over gRPC. Build first with scripts/test.sh.

mod audio;
mod bad_input;
mod balancer;
mod budget;
mod classify;
mod deploy;
mod depth;
mod drain;
mod generation;
mod hostile_configs;
mod hostile_model_files;
mod hostile_requests;
mod hub;
mod int8;
mod isolation;
mod joining;
mod kserve;
mod lazy;
mod lifecycle;
mod multi_task;
mod openai;
mod plugins;
mod security;
mod segmentation;
mod seq2seq;
mod serving;
mod statuses;
mod text_tasks;
mod tls;
mod truncation;
mod tts;
mod vision;
mod warm_up;
mod whisper;
mod work_budgets;
