//! An SMTP sink on loopback for the email connector's tests: it speaks the server side of RFC 5321
//! (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), stores every message it accepts
//! with its envelope, and refuses recipients on cue: an address starting with `busy` gets `450`
//! (transient), one starting with `nobody` gets `550` (permanent).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses, in order.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, with CRLF line ends.
    pub data: String,
    /// The user name of `AUTH PLAIN`, if the client logged in.
    pub user: Option<String>,
}

/// A running SMTP sink.
#[derive(Clone)]
pub struct SmtpSink {
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts the sink on a free loopback port.
    pub async fn start() -> (SmtpSink, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let sink = SmtpSink {
            mails: Arc::new(Mutex::new(Vec::new())),
        };
        let mails = sink.mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mails = mails.clone();
                tokio::spawn(async move {
                    let _ = session(stream, mails).await;
                });
            }
        });
        (sink, addr)
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg.rfind('>').unwrap_or(arg.len());
    arg[start..end.max(start)].to_string()
}

async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 weft-testkit SMTP sink\r\n").await?;
    let mut mail = Mail::default();
    let mut user = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-weft-testkit\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 weft-testkit\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let token = command[10..].trim();
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap_or_default();
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            if parts.len() == 3 && parts[2] == b"secret" {
                user = Some(String::from_utf8_lossy(parts[1]).into_owned());
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: address(&command[10..]),
                user: user.clone(),
                ..Mail::default()
            };
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let to = address(&command[8..]);
            if to.starts_with("busy") {
                "450 4.2.1 Mailbox busy, try again later\r\n".into()
            } else if to.starts_with("nobody") {
                "550 5.1.1 No such user\r\n".into()
            } else {
                mail.to.push(to);
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(unstuffed);
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 Queued\r\n".into()
        } else if upper == "RSET" {
            mail = Mail::default();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}
