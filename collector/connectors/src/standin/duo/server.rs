//! A minimal HTTP/1.1 server on loopback: one thread accepts, one thread per connection,
//! one request per connection (`Connection: close`), bodies by `Content-Length` only.
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, atomic::AtomicBool},
    thread::{self, JoinHandle},
    time::Duration,
};

/// Bodies larger than this are refused (413).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Request line plus headers larger than this are refused.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request as received.
pub(super) struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string (after `?`), possibly empty.
    pub query: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status and JSON body.
pub(super) struct Response {
    pub status: u16,
    pub body: String,
}

/// The accept loop; stops when `stop` is set.
pub(super) fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handler: Arc<dyn Fn(Request) -> Response + Send + Sync>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        super::super::accept_loop(listener, stop, |stream| {
            let handler = Arc::clone(&handler);
            thread::spawn(move || {
                if let Err(e) = one_connection(stream, handler.as_ref()) {
                    tracing::debug!(error = %e, "duo stand-in: connection");
                }
            });
        });
    })
}

fn one_connection(
    stream: TcpStream,
    handler: &(dyn Fn(Request) -> Response + Send + Sync),
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let resp = match read_request(&mut reader) {
        Ok(Some(req)) => handler(req),
        Ok(None) => return Ok(()),
        Err(e) => Response {
            status: 400,
            body: super::fail_body(40000, "Bad request", Some(&e.to_string())),
        },
    };
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(resp.body.as_bytes())?;
    writer.flush()
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request; `None` if the peer closed without sending one (a wake-up).
fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut head_bytes = 0usize;
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    head_bytes += line.len();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        head_bytes += h.len();
        if head_bytes > MAX_HEAD_BYTES {
            return Err(bad("headers too large"));
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad("malformed header"))?;
        req.headers
            .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if req.header("transfer-encoding").is_some() {
        return Err(bad("chunked bodies are not supported; send Content-Length"));
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| bad("bad Content-Length"))?,
        None => 0,
    };
    if len > MAX_BODY_BYTES {
        return Err(bad("body too large"));
    }
    req.body = vec![0; len];
    r.read_exact(&mut req.body)?;
    Ok(Some(req))
}

/// Decodes `k=v&k=v` (percent escapes, `+` as space) into pairs; `None` if an escape is
/// malformed or a result is not UTF-8.
pub(super) fn decode_form(s: &str) -> Option<Vec<(String, String)>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
