"""Training configurations: the task protocol, the supervised task and the bucket trainer."""

from jaxnas._shapes import pad_to_power_of_two
from jaxnas.train._bucket_trainer import BucketTrainer
from jaxnas.train._protocol import BucketTask, FixedTask, Task, as_bucket_task, task_from_function
from jaxnas.train._supervised import SupervisedTask
from jaxnas.train._train_state import TrainState, default_optimizer

__all__ = ["BucketTask", "BucketTrainer", "FixedTask", "SupervisedTask", "Task", "TrainState",
           "as_bucket_task", "default_optimizer", "pad_to_power_of_two", "task_from_function"]
