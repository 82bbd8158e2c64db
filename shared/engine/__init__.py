"""The one training engine: plug a :class:`Task` in, get checkpoints, logs, AMP, DDP and resume."""
from .checkpoint import atomic_save, load_checkpoint_file
from .config import EngineConfig, LoggerConfig, OptimConfig, RunConfig, SchedConfig
from .dist import barrier, init_distributed, is_main_process, rank, world_size
from .seed import seed_everything
from .task import Task
from .trainer import NonFiniteLossError, Trainer, move_to, unwrap

__all__ = [
    "EngineConfig", "LoggerConfig", "OptimConfig", "RunConfig", "SchedConfig", "Task", "Trainer",
    "NonFiniteLossError", "atomic_save", "load_checkpoint_file", "seed_everything", "init_distributed",
    "is_main_process", "rank", "world_size", "barrier", "move_to", "unwrap",
]
