//! Guest kernel command-line additions for PVM hosts, merged into the user's `boot_args`
//! without overriding anything the user set.

/// What each addition is for:
/// - `noxsave`: no XSAVE/XRSTOR/XSETBV in the kernel (the emulator lacks them; the kernel falls
///   back to FXSAVE).
/// - `clearcpuid=...`: hide features PVM shows from the host's CPUID regardless of the
///   monitor's table, so the kernel does not patch in instructions the CPL0 emulator lacks
///   (POPCNT, SSE4/AVX crypto and RAID paths, MOVBE, BMI, SMAP's CLAC/STAC, ...); and ERMS
///   and FSRM, so that the kernel clears and copies memory eight bytes per string iteration
///   (`rep stosq`/`movsq`) instead of one (`rep stosb`/`movsb`): PVM emulates every
///   iteration, and page clearing and copying are most of a fork's and a pipe's kernel work
///   (a 16 MiB pipe copy measured 2.7x faster without them). A user's `clearcpuid=` is
///   merged with this list, never instead of it: the guest must not see what PVM lacks.
/// - `nopvspin`: no paravirtual spinlocks (their kick hypercall never completes on PVM).
/// - `init_on_alloc=0`, `mitigations=off`, `cryptomgr.notests`, `nowatchdog`: less kernel-mode
///   work, which PVM runs at ~1.6 µs per instruction.
pub const PVM_BOOT_ARGS: &[&str] = &[
    "noxsave",
    "clearcpuid=popcnt,ssse3,sse4_1,sse4_2,movbe,aes,pclmulqdq,avx,avx2,xsave,fma,f16c,bmi1,bmi2,adx,sha_ni,rdseed,smap,erms,fsrm",
    "nopvspin",
    "init_on_alloc=0",
    "mitigations=off",
    "cryptomgr.notests",
    "nowatchdog",
];

/// Splits a command line into parameters the way the kernel does (`next_arg` in
/// lib/cmdline.c): whitespace-separated, double quotes group spaces.
fn split_params(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// The parameter's name, normalised like the kernel's `parameq` (`-` and `_` are the same).
fn param_key(param: &str) -> String {
    let unquoted = param.trim_start_matches('"');
    let name = unquoted.split('=').next().unwrap_or(unquoted);
    name.trim_end_matches('"').replace('-', "_")
}

/// Parameters whose value is a comma-separated list that both sides add to: the user's items
/// follow ours in one parameter (the kernel reads only one `clearcpuid=`).
const LIST_PARAMS: &[&str] = &["clearcpuid"];

/// The kernel copies `clearcpuid=`'s value into a 128-byte buffer (`cpu_parse_early_param`
/// in arch/x86/kernel/cpu/common.c): items past it would be silently dropped.
const LIST_VALUE_MAX: usize = 127;

/// Appends `additions` to `user` unless the user already set the same parameter (a list
/// parameter gets our items first, then the user's); everything after a `--` (arguments for
/// init) stays last.
pub fn merge_boot_args(user: &str, additions: &[&str]) -> String {
    let params = split_params(user);
    let split = params
        .iter()
        .position(|p| *p == "--")
        .unwrap_or(params.len());
    let (kernel, init) = params.split_at(split);
    let mut out: Vec<String> = kernel.iter().map(|p| (*p).to_owned()).collect();
    for add in additions {
        let key = param_key(add);
        match out.iter().position(|p| param_key(p) == key) {
            None => out.push((*add).to_owned()),
            Some(at) if LIST_PARAMS.contains(&key.as_str()) => {
                out[at] = merge_list_param(add, &out[at]);
            }
            Some(_) => {}
        }
    }
    out.extend(init.iter().map(|p| (*p).to_owned()));
    out.join(" ")
}

/// `name=ours,...` with the user's items that are not ours appended, as long as the value
/// fits the kernel's buffer.
fn merge_list_param(ours: &str, user: &str) -> String {
    let (name, our_value) = ours.split_once('=').unwrap_or((ours, ""));
    let user_value = user.split_once('=').map_or("", |(_, v)| v);
    let mut value = our_value.to_owned();
    for item in user_value.split(',').filter(|i| !i.is_empty()) {
        if our_value.split(',').any(|o| o == item) {
            continue;
        }
        if value.len() + 1 + item.len() > LIST_VALUE_MAX {
            tracing::warn!("{name}={item} dropped: the kernel reads {LIST_VALUE_MAX} bytes");
            continue;
        }
        value.push(',');
        value.push_str(item);
    }
    format!("{name}={value}")
}

/// The user's boot arguments with the PVM additions merged in.
pub fn guest_cmdline(user_boot_args: &str) -> String {
    merge_boot_args(user_boot_args, PVM_BOOT_ARGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_user_args_get_every_addition() {
        assert_eq!(guest_cmdline(""), PVM_BOOT_ARGS.join(" "));
        assert_eq!(guest_cmdline("   "), PVM_BOOT_ARGS.join(" "));
    }

    #[test]
    fn user_values_win() {
        let out = guest_cmdline("console=ttyS0 mitigations=auto clearcpuid=avx512f reboot=k");
        assert!(out.starts_with("console=ttyS0 mitigations=auto clearcpuid=popcnt,"));
        assert!(out.contains(",erms,fsrm,avx512f reboot=k "), "{out}");
        assert!(!out.contains("mitigations=off"));
        assert_eq!(out.matches("clearcpuid").count(), 1);
        assert!(out.contains(" noxsave"));
        assert!(out.contains(" nopvspin"));
        assert_eq!(out.matches("mitigations").count(), 1);
    }

    #[test]
    fn dashes_and_underscores_name_the_same_parameter() {
        let out = guest_cmdline("init-on-alloc=1 cryptomgr.notests=0");
        assert!(!out.contains("init_on_alloc=0"));
        assert_eq!(out.matches("cryptomgr.notests").count(), 1);
    }

    #[test]
    fn init_arguments_stay_after_the_separator() {
        let out = guest_cmdline("root=/dev/vda -- single noxsave");
        let (kernel, init) = out.split_once(" -- ").unwrap();
        assert_eq!(init, "single noxsave");
        assert!(kernel.starts_with("root=/dev/vda "));
        // `noxsave` after `--` belongs to init, so the kernel still needs ours.
        assert!(kernel.contains("noxsave"));
    }

    #[test]
    fn quoted_values_are_one_parameter() {
        let out = guest_cmdline("dyndbg=\"file foo.c +p\" nowatchdog=1");
        assert!(out.starts_with("dyndbg=\"file foo.c +p\" nowatchdog=1 "));
        assert_eq!(out.matches("nowatchdog").count(), 1);
        assert_eq!(split_params("a=\"x y\" b"), vec!["a=\"x y\"", "b"]);
        assert_eq!(param_key("\"quiet\""), "quiet");
    }

    #[test]
    fn a_user_clearcpuid_adds_to_ours_within_the_kernel_buffer() {
        let ours = PVM_BOOT_ARGS
            .iter()
            .find(|p| p.starts_with("clearcpuid="))
            .unwrap();
        assert!(ours.len() - "clearcpuid=".len() <= LIST_VALUE_MAX);
        // Ours already: nothing added twice.
        let merged = guest_cmdline("clearcpuid=avx,erms");
        assert_eq!(merged.split_whitespace().next(), Some(*ours), "{merged}");
        let long = format!("clearcpuid={}", ["feat"; 8].join(","));
        let out = guest_cmdline(&long);
        let value = out
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1;
        assert!(value.len() <= LIST_VALUE_MAX, "{value}");
        assert!(value.starts_with("popcnt,") && value.contains("fsrm,feat"));
    }

    #[test]
    fn merging_is_idempotent() {
        let once = guest_cmdline("console=hvc0");
        assert_eq!(guest_cmdline(&once), once);
    }
}
