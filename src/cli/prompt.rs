//! Questions asked on the terminal: secrets (not echoed) and yes/no answers.
//!
//! Every question is asked on `/dev/tty`, so stdin stays free for data, after the progress
//! bars are cleared from the screen, so that the question is what the person sees. Ctrl-C
//! while a question waits restores the terminal and ends the command with exit 130; nothing has
//! been written at that point.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use super::exit::CliError;
use super::output;
use mxkeys::secret::Passphrase;

/// How often a waiting question looks for Ctrl-C.
const POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Ask for a secret; what is typed is not shown.
pub fn secret(question: &str) -> anyhow::Result<Passphrase> {
    let mut answer = ask(question, false)?;
    Ok(Passphrase::from_string(std::mem::take(&mut *answer)))
}

/// Ask for a line of text that is shown as it is typed.
pub fn line(question: &str) -> anyhow::Result<String> {
    Ok(ask(question, true)?.trim().to_string())
}

/// Say something on the terminal as part of a dialogue ("Wrong passphrase ..."), with no bar
/// drawn over it. Falls back to stderr when there is no terminal.
pub fn say(text: &str) {
    output::clear_bars();
    match tty() {
        Ok(mut t) => {
            let _ = writeln!(t, "{text}");
        }
        Err(_) => eprintln!("{text}"),
    }
}

fn tty() -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open("/dev/tty")
}

/// Echo is off while this lives; the terminal's settings are restored when it drops, on every
/// path out of a question.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> std::io::Result<Self> {
        let saved = tcgetattr(tty.as_fd())?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(tty.as_fd(), OptionalActions::Now, &quiet)?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty.as_fd(), OptionalActions::Now, &self.saved);
    }
}

fn ask(question: &str, echo: bool) -> anyhow::Result<Zeroizing<String>> {
    output::clear_bars();
    let io = |e: std::io::Error| mxkeys::Error::io("asking on the terminal", e);
    let mut tty = tty().map_err(io)?;
    tty.write_all(question.as_bytes()).map_err(io)?;
    tty.flush().map_err(io)?;
    let answer = {
        let _echo_off = if echo {
            None
        } else {
            Some(EchoOff::new(&tty).map_err(io)?)
        };
        read_answer(&tty)
    };
    if !echo {
        // The Enter that ended the answer was not echoed either.
        let _ = tty.write_all(b"\n");
    }
    match answer {
        Ok(Some(bytes)) => {
            let s = std::str::from_utf8(&bytes).map_err(|_| {
                CliError::usage(
                    "what was typed is not valid UTF-8",
                    "check the terminal's character encoding (locale)",
                )
            })?;
            Ok(Zeroizing::new(s.to_owned()))
        }
        Ok(None) => Err(CliError::usage(
            "no answer (the terminal was closed or Ctrl-D was pressed)",
            "run the command again and type the answer, or give it with a --…-file flag",
        )),
        Err(Stop::Interrupted) => {
            if echo {
                let _ = tty.write_all(b"\n");
            }
            Err(mxkeys::Error::Interrupted.into())
        }
        Err(Stop::Io(e)) => Err(io(e).into()),
    }
}

enum Stop {
    Interrupted,
    Io(std::io::Error),
}

/// Read one line (without its end) from the terminal, in canonical mode so that the terminal
/// does the editing; `None` on end of file before anything was typed.
fn read_answer(mut tty: &File) -> Result<Option<Zeroizing<Vec<u8>>>, Stop> {
    let mut buf = Zeroizing::new(Vec::new());
    let mut chunk = Zeroizing::new([0u8; 256]);
    loop {
        if output::interrupted() {
            return Err(Stop::Interrupted);
        }
        let mut fds = [PollFd::new(&tty, PollFlags::IN)];
        match poll(&mut fds, Some(&POLL)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Stop::Io(e.into())),
        }
        let n = match tty.read(&mut chunk[..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stop::Io(e)),
        };
        if n == 0 {
            return Ok((!buf.is_empty()).then_some(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            buf.truncate(end);
            return Ok(Some(buf));
        }
    }
}
