"""Worker-side Prometheus metrics. Names follow Prometheus conventions (units in names) and every
label set is bounded: models, versions, stages, queues, outcomes and error codes — never a job id or
a user. In a prefork worker each pool process writes to PROMETHEUS_MULTIPROC_DIR and the worker's
own /metrics server (workers.metrics_server) aggregates them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

JOBS_FINISHED = Counter("deepscreen_jobs_finished_total", "Jobs finished by workers, per requested model",
                        ["model", "outcome", "code"])
QUEUE_SECONDS = Histogram("deepscreen_job_queue_seconds", "Time from submission to claim", ["queue"],
                          buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("deepscreen_stage_seconds", "Time per stage per batch (model '-' = all models)",
                          ["model", "stage"], buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("deepscreen_batch_size", "Jobs per claimed batch", ["queue"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
MODEL_LOAD_SECONDS = Gauge("deepscreen_model_load_seconds", "Seconds to load and verify a model version",
                           ["model", "version"], multiprocess_mode="max")
MODEL_INFO = Gauge("deepscreen_model_info", "A loaded model version and the runtime it actually got",
                   ["model", "version", "provider", "precision", "requested_provider"], multiprocess_mode="max")
CUDA_FELL_BACK = Gauge("deepscreen_worker_cuda_requested_but_cpu",
                       "1 when CUDA was asked for but the session runs on the CPU", ["model", "version"],
                       multiprocess_mode="max")
PREDICTIONS = Counter("deepscreen_predictions_total", "Verdicts by label", ["model", "version", "label"])
SCORES = Histogram("deepscreen_score", "Distribution of verdict scores", ["model", "version"],
                   buckets=tuple(round(0.1 * i, 1) for i in range(1, 11)))
WEBHOOKS = Counter("deepscreen_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])
SHADOW_COMPARED = Counter("deepscreen_shadow_comparisons_total", "Shadow vs live verdicts on the same job",
                          ["model", "shadow_version", "agree"])
SHADOW_DELTA = Histogram("deepscreen_shadow_score_delta", "Shadow score minus live score", ["model", "shadow_version"],
                         buckets=(-1, -0.5, -0.25, -0.1, -0.05, 0, 0.05, 0.1, 0.25, 0.5, 1))
REPROCESSED = Counter("deepscreen_reprocessed_total", "Jobs re-screened by reprocessing runs",
                      ["model", "version", "outcome"])
