"""What every section of the homework companion shares: the CNN it analyses by default, the
problem sizes of the full report and of the ``--quick`` smoke run, and plain-float conversion
(the answers are plain data, so that they serialise to ``hw2.json`` as they are)."""

DEFAULT_SPEC = "in32x32x1 conv3 pool2 conv3 pool2 conv3 pool2"

#: Problem sizes: the full report and the ``--quick`` smoke run (tests).
SIZES = {
    False: dict(sgd_n=20, sgd_d=50, sgd_seeds=(0, 1, 2), sgd_batches=(2, 5, 10), sgd_steps=20000,
                adaptive_steps=5000, adaptive_record=5, mem_d=1000, mem_n=50,
                mem_T=(250, 500, 1000, 2000, 4000, 8000, 16000), lr_n=40, lr_d=10, wd_n=30, wd_d=8,
                wd_steps=200),
    True: dict(sgd_n=8, sgd_d=20, sgd_seeds=(0, 1), sgd_batches=(2, 4), sgd_steps=6000,
               adaptive_steps=3000, adaptive_record=5, mem_d=200, mem_n=20,
               mem_T=(50, 100, 200, 400, 800), lr_n=20, lr_d=6, wd_n=12, wd_d=5, wd_steps=50),
}


def _f(x):
    return float(x)
