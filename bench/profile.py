#!/usr/bin/env python3
"""Symbolizes a guest profile written by outpost-vmm (OUTPOST_GUEST_PROFILE=<file>: RIP
samples of vCPU 0, one every 5 ms) and reports where the guest kernel spent its time: the
top functions and the share of timer-tick and interrupt code (a flat profile: samples count
the function the vCPU was in, not its callers, so the tick share is a lower bound).

Usage: bench/profile.py PROFILE SYMBOLS   (SYMBOLS: a System.map, or an ELF vmlinux for nm)
"""
import bisect, collections, subprocess, sys

# Functions that run because of the periodic tick or the timer interrupt (Linux 6.1).
TICK = {
    "asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "__sysvec_apic_timer_interrupt",
    "local_apic_timer_interrupt", "hrtimer_interrupt", "__hrtimer_run_queues", "tick_sched_timer",
    "tick_sched_handle", "tick_do_update_jiffies64", "update_process_times", "scheduler_tick",
    "run_local_timers", "rcu_sched_clock_irq", "account_process_tick", "hrtimer_forward",
    "ktime_get_update_offsets_now", "lapic_next_deadline", "lapic_next_event", "clockevents_program_event",
    "tick_program_event", "task_tick_fair", "update_wall_time", "timekeeping_advance", "run_timer_softirq",
    "__run_timers", "irq_exit_rcu", "__irq_exit_rcu", "irq_enter_rcu", "__do_softirq", "rcu_core",
    "update_curr", "update_load_avg", "trigger_load_balance", "kvm_clock_get_cycles", "kvm_clock_read",
    "pvclock_clocksource_read", "ktime_get", "timer_interrupt", "tick_handle_periodic", "do_timer",
    "perf_event_task_tick", "calc_global_load_tick", "psi_task_tick", "irqtime_account_irq",
    "sched_clock_cpu", "native_sched_clock", "kvm_sched_clock_read", "update_rq_clock",
}


def load_symbols(path):
    if open(path, "rb").read(4) == b"\x7fELF":
        out = subprocess.run(["nm", "-n", path], capture_output=True, text=True, check=True).stdout
    else:
        out = open(path).read()
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def main():
    prof, syms = sys.argv[1], sys.argv[2]
    addrs, names = load_symbols(syms)
    by_fn = collections.Counter()
    total = user = 0
    for line in open(prof):
        n, rip = line.split()
        n, rip = int(n), int(rip, 16)
        total += n
        if rip < 0xffff800000000000:
            user += n
            by_fn["[user space]"] += n
            continue
        i = bisect.bisect_right(addrs, rip) - 1
        by_fn[names[i] if i >= 0 else "[unknown]"] += n
    tick = sum(n for f, n in by_fn.items() if f in TICK)
    print(f"samples: {total}  (one per 5 ms of vCPU 0)")
    print(f"timer tick and interrupt code: {100.0 * tick / max(total, 1):.1f}%")
    print(f"guest user space: {100.0 * user / max(total, 1):.1f}%")
    print("top functions:")
    for f, n in by_fn.most_common(25):
        print(f"  {100.0 * n / total:5.1f}%  {n:7d}  {f}{'  [tick]' if f in TICK else ''}")


if __name__ == "__main__":
    main()
