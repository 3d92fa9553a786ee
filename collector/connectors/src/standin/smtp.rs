//! A minimal SMTP sink (RFC 5321 subset, plain text, no TLS): EHLO/HELO, optional
//! AUTH PLAIN, MAIL FROM, RCPT TO, DATA (dot-unstuffed), RSET, NOOP, QUIT. Every message
//! is recorded with its envelope; commands out of order get 503. Stops on drop.
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use base64::Engine as _;

use super::http::lock;

/// Largest message accepted, in bytes.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Longest command line accepted.
const MAX_LINE_BYTES: u64 = 4096;

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The MAIL FROM address (without angle brackets).
    pub from: String,
    /// Every RCPT TO address.
    pub to: Vec<String>,
    /// The message as sent after DATA (headers and body, CRLF line ends).
    pub data: String,
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<ReceivedMail>>,
    /// Required AUTH PLAIN credentials, if any.
    credentials: Mutex<Option<(String, String)>>,
    /// Reply code to give the next `n` MAIL FROM commands instead of 250.
    fail: Mutex<(u16, u32)>,
}

/// The running sink.
pub struct SmtpSink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts on 127.0.0.1:0.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State::default());
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("standin-smtp".into())
            .spawn(move || {
                super::accept_loop(listener, stop2, |conn| {
                    let s = state2.clone();
                    let _ = std::thread::Builder::new()
                        .name("standin-smtp-conn".into())
                        .spawn(move || {
                            let _ = session(conn, &s);
                        });
                });
            })?;
        Ok(Self {
            addr,
            stop,
            state,
            thread: Some(thread),
        })
    }

    /// Require AUTH PLAIN with these credentials before MAIL FROM.
    pub fn require_auth(&self, username: &str, password: &str) {
        *lock(&self.state.credentials) = Some((username.into(), password.into()));
    }

    /// Answer the next `n` MAIL FROM commands with `code` (e.g. 451 transient, 550
    /// permanent).
    pub fn fail_next(&self, code: u16, n: u32) {
        *lock(&self.state.fail) = (code, n);
    }

    /// The messages received, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state.messages).clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address inside `FROM:<a@b> SIZE=…` / `TO:<a@b>`.
fn path_arg(rest: &str) -> Option<String> {
    let start = rest.find('<')?;
    let end = rest[start..].find('>')? + start;
    Some(rest[start + 1..end].to_owned())
}

fn session(conn: TcpStream, state: &State) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut reply = |code: u16, text: &str| out.write_all(format!("{code} {text}\r\n").as_bytes());
    reply(220, "standin.cordon ESMTP sink")?;
    let (mut helo, mut authed) = (false, false);
    let (mut from, mut to): (Option<String>, Vec<String>) = (None, Vec::new());
    loop {
        let mut line = String::new();
        if (&mut r).take(MAX_LINE_BYTES).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let needs_auth = lock(&state.credentials).is_some();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                helo = true;
                let mut w = r.get_ref().try_clone()?;
                w.write_all(
                    b"250-standin.cordon\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 4194304\r\n",
                )?;
            }
            "HELO" => {
                helo = true;
                reply(250, "standin.cordon")?;
            }
            "AUTH" => {
                let mut parts = rest.split_whitespace();
                let ok = parts
                    .next()
                    .is_some_and(|m| m.eq_ignore_ascii_case("PLAIN"))
                    && parts
                        .next()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .is_some_and(|raw| {
                            let creds = lock(&state.credentials);
                            creds
                                .as_ref()
                                .is_some_and(|(u, p)| raw == format!("\0{u}\0{p}").into_bytes())
                        });
                if ok {
                    authed = true;
                    reply(235, "2.7.0 Authentication successful")?;
                } else {
                    reply(535, "5.7.8 Authentication credentials invalid")?;
                }
            }
            "MAIL" if !helo => reply(503, "5.5.1 EHLO first")?,
            "MAIL" if needs_auth && !authed => reply(530, "5.7.0 Authentication required")?,
            "MAIL" => {
                let fail = {
                    let mut f = lock(&state.fail);
                    if f.1 > 0 {
                        f.1 -= 1;
                        Some(f.0)
                    } else {
                        None
                    }
                };
                match (fail, path_arg(rest)) {
                    (Some(code), _) => reply(code, "injected failure")?,
                    (None, Some(a)) => {
                        from = Some(a);
                        to.clear();
                        reply(250, "2.1.0 OK")?;
                    }
                    (None, None) => reply(501, "5.5.4 MAIL FROM:<address>")?,
                }
            }
            "RCPT" if from.is_none() => reply(503, "5.5.1 MAIL first")?,
            "RCPT" => match path_arg(rest) {
                Some(a) => {
                    to.push(a);
                    reply(250, "2.1.5 OK")?;
                }
                None => reply(501, "5.5.4 RCPT TO:<address>")?,
            },
            "DATA" if to.is_empty() => reply(503, "5.5.1 RCPT first")?,
            "DATA" => {
                reply(354, "End data with <CR><LF>.<CR><LF>")?;
                let data = read_data(&mut r)?;
                let Some(data) = data else {
                    reply(552, "5.3.4 Message too big")?;
                    continue;
                };
                lock(&state.messages).push(ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                });
                reply(250, "2.0.0 OK queued")?;
            }
            "RSET" => {
                from = None;
                to.clear();
                reply(250, "2.0.0 OK")?;
            }
            "NOOP" => reply(250, "2.0.0 OK")?,
            "QUIT" => {
                reply(221, "2.0.0 Bye")?;
                return Ok(());
            }
            _ => reply(502, "5.5.2 Command not implemented")?,
        }
    }
}

/// Lines up to the lone ".", dot-unstuffed; `None` if the message is too big.
fn read_data(r: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut data = String::new();
    let mut too_big = false;
    loop {
        let mut line = String::new();
        if r.take(MAX_LINE_BYTES * 256).read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in DATA"));
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(if too_big { None } else { Some(data) });
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if data.len() + line.len() > MAX_MESSAGE_BYTES {
            too_big = true;
        } else {
            data.push_str(line);
        }
    }
}
