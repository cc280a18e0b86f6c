"""Independent numpy (float64) references for the problems, transcribed from the literature.

Hartmann: Dixon & Szegoe (1978), constants as in Surjanovic & Bingham's Virtual Library
of Simulation Experiments; fidelity as in mfpbench's `generators.py`. Branin: Dixon &
Szegoe (1978); fidelity shifts as in Kandasamy et al.'s Dragonfly `branin_z_x`.
"""

import math

import numpy as np

HARTMANN = {
    3: dict(
        a=np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
        p=1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470],
                           [1091, 8732, 5547], [381, 5743, 8828]]),
        argmin=(0.114614, 0.555649, 0.852547),
        optimum=-3.86278,
    ),
    6: dict(
        a=np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                    [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]),
        p=1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                           [2329, 4135, 8307, 3736, 1004, 9991],
                           [2348, 1451, 3522, 2883, 3047, 6650],
                           [4047, 8828, 8732, 5743, 1091, 381]]),
        argmin=(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573),
        optimum=-3.32237,
    ),
}
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
BRANIN_MINIMIZERS = ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475))
BRANIN_OPTIMUM = 0.397887


def scaled_fidelity(z):
    return math.log(z) / math.log(100)


def hartmann_terms(x, dim):
    """exp(-sum_j A_ij (x_j - P_ij)^2) for i = 1..4: x (..., dim) -> (..., 4)."""
    c = HARTMANN[dim]
    x = np.asarray(x, float)[..., None, :]
    return np.exp(-np.sum(c["a"] * (x - c["p"]) ** 2, axis=-1))


def mf_hartmann(x, z, dim, bias):
    """Noiseless MF-Hartmann: the weights lose bias * (1 - s)."""
    alpha = HARTMANN_ALPHA - bias * (1 - scaled_fidelity(z))
    return -float(np.sum(alpha * hartmann_terms(x, dim)))


def mf_branin(x, z, bias):
    gap = bias * (1 - scaled_fidelity(z))
    b = 5.1 / (4 * math.pi**2) - 0.01 * gap
    c = 5 / math.pi - 0.1 * gap
    t = 1 / (8 * math.pi) + 0.005 * gap
    return (x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10
