//! What a person sees on stderr: progress lines, a spinner while waiting for
//! the browser or the device poll, a QR code of the device URL, and opening
//! URLs with `$BROWSER`. Nothing here writes to stdout, which belongs to
//! `--json` output.

use std::io::{IsTerminal as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Output settings.
#[derive(Debug, Clone)]
pub struct Ui {
    /// Print nothing but errors, warnings and prompts.
    pub quiet: bool,
    /// stderr is a terminal (spinner and QR code only then).
    pub tty: bool,
}

impl Ui {
    /// Settings for this process's stderr.
    pub fn detect(quiet: bool) -> Ui {
        Ui {
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A progress line.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// What the person must do for the command to go on (where to sign in,
    /// which code to enter); shown even when quiet, because `--quiet`
    /// means no chatter, never a silent wait for someone who was not told.
    pub fn prompt(&self, message: &str) {
        eprintln!("{message}");
    }

    /// A warning; shown even when quiet.
    pub fn warn(&self, message: &str) {
        eprintln!("jit-ssh: warning: {message}");
    }

    /// Shows `message` with a spinner until the guard drops.
    pub fn spinner(&self, message: &str) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        if self.quiet {
            return Spinner { stop, thread: None };
        }
        if !self.tty {
            eprintln!("{message}");
            return Spinner { stop, thread: None };
        }
        let flag = stop.clone();
        let message = message.to_string();
        let thread = std::thread::spawn(move || {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                eprint!("\r{} {message}", frames[i % frames.len()]);
                let _ = std::io::stderr().flush();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        });
        Spinner {
            stop,
            thread: Some(thread),
        }
    }

    /// Prints a QR code of `data` when stderr is a terminal (a prompt, so
    /// also when quiet).
    pub fn qr(&self, data: &str) {
        if !self.tty {
            return;
        }
        if let Ok(code) = qrcode::QrCode::new(data.as_bytes()) {
            let image = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .build();
            eprintln!("{image}");
        }
    }
}

/// A running spinner; stops and clears its line on drop.
pub struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens `url` with `$BROWSER` (colon-separated commands, `%s` replaced by the
/// URL or the URL appended) when set, else the system opener. The browser
/// runs detached; its exit is reaped by a background thread.
pub fn open_url(browser: Option<&str>, url: &str) -> Result<(), String> {
    let candidates: Vec<String> = match browser.filter(|b| !b.trim().is_empty()) {
        Some(list) => list.split(':').map(str::to_string).collect(),
        None if cfg!(target_os = "macos") => vec!["open".into()],
        None => vec!["xdg-open".into()],
    };
    let mut last_error = String::from("no browser command");
    for candidate in candidates {
        let mut words = candidate.split_whitespace();
        let Some(program) = words.next() else {
            continue;
        };
        let mut args: Vec<String> = words.map(str::to_string).collect();
        if args.iter().any(|a| a.contains("%s")) {
            for arg in &mut args {
                *arg = arg.replace("%s", url);
            }
        } else {
            args.push(url.to_string());
        }
        match Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            Err(e) => last_error = format!("{program}: {e}"),
        }
    }
    Err(last_error)
}
