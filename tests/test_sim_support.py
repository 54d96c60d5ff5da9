"""A tiny real TrainingJob for simulator tests: softmax regression in numpy on generated blobs.

It follows workloads.api.TrainingJob exactly (ops with allocs/frees, real math), small enough that
timeline tests stay fast and their numbers easy to reason about.
"""
from __future__ import annotations

import itertools

import numpy as np

from workloads.trace import Op, Tensor, new_tensor_id


class TinyJob:
    """Softmax regression ``in_dim -> classes``; ``extra_bytes`` pads the step's workspace."""

    def __init__(self, in_dim: int = 8, classes: int = 3, seed: int = 0, lr: float = 0.5,
                 extra_bytes: int = 0) -> None:
        self.name = f"tiny:{in_dim}-{classes}"
        self.input_shape = (in_dim,)
        self.num_classes = classes
        self.seed = seed
        self.lr = lr
        self.extra_bytes = extra_bytes
        rng = np.random.default_rng(seed)
        self.centers = rng.normal(0, 2.0, size=(classes, in_dim)).astype(np.float32)
        self.W = np.zeros((in_dim, classes), dtype=np.float32)
        self._w = Tensor(new_tensor_id(), self.W.nbytes, "weight", "W")

    def persistent_tensors(self) -> tuple[Tensor, ...]:
        return (self._w,)

    def trainable_bytes(self) -> int:
        return self.W.nbytes

    def flash_bytes(self) -> int:
        return self.W.nbytes

    def _sample(self, rng):
        y = int(rng.integers(self.num_classes))
        return (self.centers[y] + rng.normal(0, 1.0, self.centers.shape[1])).astype(np.float32), y

    def labelled_stream(self):
        rng = np.random.default_rng(self.seed + 1)
        while True:
            yield self._sample(rng)

    def infer(self, x):
        a = Tensor(new_tensor_id(), 4 * self.num_classes, "activation", "logits")
        logits = x @ self.W
        yield Op("fc.forward", "matmul", self.W.size, x.nbytes + self.W.nbytes, a.nbytes, alloc=(a,), free=(a.id,))
        return int(np.argmax(logits))

    def train_step(self, xs, ys):
        n = len(xs)
        a = Tensor(new_tensor_id(), 4 * n * self.num_classes, "activation", "logits")
        logits = xs @ self.W
        yield Op("fc.forward", "matmul", n * self.W.size, xs.nbytes + self.W.nbytes, a.nbytes, alloc=(a,))
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        loss = float(-np.log(p[np.arange(n), ys] + 1e-12).mean())
        g = Tensor(new_tensor_id(), a.nbytes, "grad", "dlogits")
        ws = Tensor(new_tensor_id(), self.extra_bytes, "workspace", "scratch") if self.extra_bytes else None
        p[np.arange(n), ys] -= 1
        yield Op("loss.softmax_xent", "eltwise", 0, a.nbytes, g.nbytes, alloc=(g,) + ((ws,) if ws else ()),
                 free=(a.id,))
        wg = Tensor(new_tensor_id(), self.W.nbytes, "wgrad", "dW")
        dW = xs.T @ p / n
        yield Op("fc.backward_weight", "matmul", n * self.W.size, xs.nbytes + g.nbytes, wg.nbytes, alloc=(wg,),
                 free=(g.id,) + ((ws.id,) if ws else ()))
        self.W -= self.lr * dW.astype(np.float32)
        yield Op("fc.update", "update", self.W.size, 2 * self.W.nbytes, self.W.nbytes, free=(wg.id,))
        return loss

    def evaluate(self) -> dict[str, float]:
        rng = np.random.default_rng(self.seed + 99)
        xs, ys = zip(*(self._sample(rng) for _ in range(200)), strict=False)
        pred = np.argmax(np.stack(xs) @ self.W, axis=1)
        acc = float(np.mean(pred == np.array(ys)))
        return {"user_accuracy": acc, "retention_accuracy": acc}


def test_tiny_job_learns():
    job = TinyJob()
    before = job.evaluate()["user_accuracy"]
    stream = job.labelled_stream()
    for _ in range(30):
        xs, ys = zip(*itertools.islice(stream, 8), strict=False)
        gen = job.train_step(np.stack(xs), np.array(ys))
        ops = list(gen)
        assert [o.name for o in ops][-1] == "fc.update"
    assert job.evaluate()["user_accuracy"] > max(before, 0.8)


def unit_profile(*, ram_bytes: int = 1 << 20, reserved: int = 0, block: int = 1, overhead: int = 0,
                 clock_hz: float = 1e6, active_w: float = 1.0, idle_w: float = 0.1, sleep_w: float = 0.01,
                 capacity_j: float = 1e9, flash_j_per_byte: float = 0.0):
    """A real DeviceProfile (the bundled pyboard's) with round numbers: 1 MAC = 1 cycle, 1 V supply,
    so 1e6 MACs take 1 s at 1 MHz and currents are watts."""
    import dataclasses

    from device_profiles.loader import load_profile

    p = load_profile("stm32f405-pyboard")
    rt = dataclasses.replace(p.runtime["native"], ram_reserved_bytes=reserved, heap_block_bytes=block,
                             alloc_overhead_bytes=overhead, cycles_per_mac_f32=1.0, cycles_per_mac_i8=1.0,
                             cycles_per_elem_f32=1.0, cycles_per_byte_copy=0.0, op_overhead_cycles=0.0,
                             kind_costs=None, gc_garbage_bytes_per_cycle=None, gc_collection_cycles=None,
                             gc_cycles_per_live_byte=None)   # the formula's round numbers only: no measured costs
    return dataclasses.replace(
        p, name="unit", core=dataclasses.replace(p.core, clock_hz=clock_hz, cycles_per_instruction=1.0),
        memory=dataclasses.replace(p.memory, ram_bytes=ram_bytes), runtime={"native": rt},
        power=dataclasses.replace(p.power, supply_voltage_v=1.0, active_current_a=active_w, idle_current_a=idle_w,
                                  sleep_current_a=sleep_w, flash_write_energy_j_per_byte=flash_j_per_byte),
        battery=dataclasses.replace(p.battery, capacity_mah=capacity_j / 3.6, voltage_v=1.0))
