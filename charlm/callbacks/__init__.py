"""charlm's training callbacks, named in configs as ``charlm.callbacks.<Name>`` (see defaults.yaml).

- InterruptCheckpoint: ``interrupted.ckpt`` when fit stops on Ctrl-C or a crash (interrupt.py)
- FitGuard, RunSummary: attached by the CLI to every fit, not named in configs (fit_guard.py, run_summary.py)
- LearningRateMonitor: Lightning's, working without loggers too (lr_monitor.py)
- TokensPerSecond: training throughput (throughput.py)
- SampleText: samples at chosen temperatures, printed and logged to a W&B table (sample_text.py)
- VisualizeNeurons: the neuron page after validation, in the run folder and W&B (visualize_neurons.py)
"""

from charlm.callbacks.interrupt import InterruptCheckpoint
from charlm.callbacks.lr_monitor import LearningRateMonitor
from charlm.callbacks.sample_text import SampleText
from charlm.callbacks.throughput import TokensPerSecond
from charlm.callbacks.visualize_neurons import VisualizeNeurons

__all__ = ["InterruptCheckpoint", "LearningRateMonitor", "SampleText", "TokensPerSecond", "VisualizeNeurons"]
