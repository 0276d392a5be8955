"""Memory accounting before the build: what the firmware will need in SRAM and flash, part by
part, checked against the target's budgets. The build then checks the real ELF sections
against this prediction (tests hold the two together)."""

from __future__ import annotations

from .errors import BudgetError

# Fixed parts of the mcu runtime, measured from the ELF of a minimal build (protocol buffers,
# UART driver, startup, kernels). Code size depends on which kernels the model links: the
# prediction uses this bound and the build reports the real figure. The runtime's SRAM measured
# 3336 B on the ResNet-8 and MobileNetV2 builds (ELF .data + .bss + stack minus arena, params,
# optimizer state and stack); 3.5 KiB keeps the prediction an upper bound, so a scheme that
# edgegrad plan fits to within a few bytes of the budget also links within it.
RUNTIME_SRAM_BYTES = 3 * 1024 + 512
CODE_BYTES_ESTIMATE = 32 * 1024


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.2f} MiB"


def predict(info: dict, stack_bytes: int) -> dict:
    sram = {
        "arena (activations + gradients)": info["arena_bytes"],
        "trainable params": info["trainable_bytes"],
        "optimizer state": info["state_bytes"],
        "stack": stack_bytes,
        "runtime buffers": RUNTIME_SRAM_BYTES,
    }
    flash = {
        "frozen params": info["frozen_bytes"],
        "trainable params (initial image)": info["trainable_bytes"],
        "code (estimate)": CODE_BYTES_ESTIMATE,
    }
    return {"sram": sram, "flash": flash, "sram_total": sum(sram.values()), "flash_total": sum(flash.values())}


def check_budgets(pred: dict, sram_budget: int, flash_budget: int) -> None:
    problems = []
    for kind, budget in (("sram", sram_budget), ("flash", flash_budget)):
        total = pred[f"{kind}_total"]
        if total > budget:
            parts = ", ".join(f"{k} {_kib(v)}" for k, v in pred[kind].items() if v)
            problems.append(f"{kind.upper()} needs {_kib(total)} ({total} B) > budget {_kib(budget)} "
                            f"({parts})")
    if problems:
        raise BudgetError("model does not fit the mcu: " + "; ".join(problems) +
                          ". Try a sparse update scheme (e.g. --update bias:all or --update last:2), "
                          "or larger budgets (--budget-sram/--budget-flash)")
