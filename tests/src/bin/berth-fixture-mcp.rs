//! `berth-fixture-mcp`: a small MCP server for Berth's tests and demos. It serves the
//! `echo`, `add` and `env_keys` tools over stdio (default) or streamable HTTP
//! (`--http PORT`), and misbehaves on request (exit after a while, never answer, crash on
//! a tool call, exit at once). Run it with `--help` for the flags and their environment
//! variables.

#[path = "../fixture/mod.rs"]
mod fixture;

use fixture::log;
use fixture::options::{Options, OptionsError, USAGE};

fn main() {
    let options = match Options::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(options) => options,
        Err(OptionsError::Help) => {
            print!("{USAGE}");
            return;
        }
        Err(OptionsError::Invalid(reason)) => {
            log(reason);
            eprint!("{USAGE}");
            std::process::exit(2);
        }
    };
    if options.exit_immediately {
        log("exiting at start as asked (--exit-immediately / FIXTURE_EXIT_IMMEDIATELY)");
        std::process::exit(2);
    }
    exit_on_termination_signals();
    if let Some(after) = options.exit_after {
        let code = options.exit_code;
        std::thread::spawn(move || {
            std::thread::sleep(after);
            log(format!(
                "exiting with code {code} after {after:?} as asked (--exit-after-ms)"
            ));
            std::process::exit(code);
        });
    }
    let code = match options.http_port {
        Some(port) => fixture::http::serve(&options, port),
        None => {
            log("serving MCP on standard input and output");
            fixture::stdio::serve(&options)
        }
    };
    std::process::exit(code);
}

/// As PID 1 of a container the kernel ignores SIGTERM and SIGINT unless a handler is
/// installed, so without this `docker stop` would wait out its grace period.
fn exit_on_termination_signals() {
    extern "C" fn on_signal(_signal: libc::c_int) {
        const MESSAGE: &[u8] = b"berth-fixture-mcp: terminated by a signal; exiting\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MESSAGE is static.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(0);
        }
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}
