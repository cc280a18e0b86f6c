"""Training configurations: tasks and the bucket trainer `jn.run` uses."""

from jaxnas.train._population import BucketTrainer, pad_to_power_of_two
from jaxnas.train._task import SupervisedTask, Task, TrainState, default_optimizer

__all__ = ["BucketTrainer", "SupervisedTask", "Task", "TrainState", "default_optimizer",
           "pad_to_power_of_two"]
