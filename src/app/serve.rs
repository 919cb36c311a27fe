//! The application on a connection: read a request, answer it, repeat
//! (docs/PROTOCOL.md §5–§6). Buffers, deadlines, backpressure, the input
//! budget and shutdown belong to the [`Driver`]; this loop only decides what
//! each request gets, and what a client hears before its connection is
//! closed for a fault of its own.

use std::sync::Arc;

use arc_swap::ArcSwap;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{Level, enabled};

use super::{AppError, Outcome, Response, SearchTable, respond_encoded};
use crate::escape::Escaped;
use crate::limited;
use crate::protocol::codec::Encoded;
use crate::protocol::{Message, MessageCodec, ProtocolError, TEXT_JSON};
use crate::python_repr::BytesRepr;
use crate::server::driver::{Driver, End, FramedDecoder};
use crate::server::log_limit::REQUEST_LINES;
use crate::server::{CloseReason, Connection, ConnectionHandler};
use crate::transport::PeerAddr;
use crate::transport::splice::Splice;

/// Serves the guide's application protocol.
#[derive(Debug, Clone)]
pub struct AppHandler {
    /// The search table, swapped whole on reload: each request reads the
    /// table of its moment, and nothing in flight is disturbed.
    pub table: Arc<ArcSwap<SearchTable>>,
    pub max_content_len: usize,
    /// Close after the first response, as the guide's server does.
    pub one_shot: bool,
}

impl FramedDecoder for MessageCodec {
    fn is_mid_message(&self) -> bool {
        MessageCodec::is_mid_message(self)
    }

    fn bytes_to_complete(&self, buffered: &[u8]) -> Option<usize> {
        MessageCodec::bytes_to_complete(self, buffered)
    }
}

impl ConnectionHandler for AppHandler {
    // Not an `async fn`: its argument would stay in the future beside the
    // driver made from it, in every idle connection's task.
    fn handle<S>(&self, connection: Connection<S>) -> impl Future<Output = CloseReason> + Send
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    {
        let codec = MessageCodec::new().with_max_content_len(self.max_content_len);
        let (mut driver, peer) = Driver::for_connection(connection, codec);
        // The block uses what it captures in place: rebinding the driver
        // inside (as an `async fn` does with its arguments) would store it twice.
        async move {
            let reason = loop {
                match driver.next_request().await {
                    Ok(request) => {
                        self.answer(&mut driver, &request, &peer);
                        if self.one_shot {
                            break CloseReason::ResponseSent;
                        }
                    }
                    Err(end) => {
                        queue_farewell(&mut driver, &end, &peer);
                        break end.into();
                    }
                }
            };
            driver.close(reason).await
        }
    }
}

impl AppHandler {
    /// Logs one request and queues its answer: a table hit as the message
    /// the table encoded when it was loaded, anything else encoded now.
    pub(crate) fn answer<S>(&self, driver: &mut Driver<S, MessageCodec>, request: &Message, peer: &PeerAddr)
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin,
    {
        log_request(request, peer);
        let table = self.table.load();
        match respond_encoded(&table, request) {
            (Response::Encoded { frame, content }, outcome) => {
                // A table's answers are text/json.
                trace_response(peer, TEXT_JSON, content);
                driver
                    .queue_answer(Encoded(frame), outcome.index())
                    .expect("encoded messages queue");
            }
            (Response::Message(response), outcome) => queue(driver, &response, outcome, peer),
        }
    }
}

/// Queues what the client is told before its connection closes for a
/// fault of its own (a bad frame, a request too slow, the budget), if any.
pub(crate) fn queue_farewell<S>(driver: &mut Driver<S, MessageCodec>, end: &End<ProtocolError>, peer: &PeerAddr)
where
    S: AsyncRead + AsyncWrite + Splice + Unpin,
{
    let error = match end {
        End::Decode(error) => AppError::BadFrame(error.to_string()),
        End::RequestTimeout(after) => AppError::RequestTimeout(*after),
        End::Evicted(evicted) => AppError::OverBudget(*evicted),
        _ => return,
    };
    queue(driver, &error.to_message(), Outcome::Error(error.kind()), peer);
}

fn queue<S>(driver: &mut Driver<S, MessageCodec>, response: &Message, outcome: Outcome, peer: &PeerAddr)
where
    S: AsyncRead + AsyncWrite + Splice + Unpin,
{
    trace_response(peer, &response.content_type, &response.content);
    // Our responses' headers are a few dozen bytes: encoding cannot exceed the u16.
    driver
        .queue_answer(response, outcome.index())
        .expect("responses encode");
}

/// The `-vv` line for each response.
fn trace_response(peer: &PeerAddr, content_type: &str, content: &[u8]) {
    if enabled!(Level::TRACE) {
        limited!(
            REQUEST_LINES,
            TRACE,
            "Sending response to {peer}: {content_type} {}",
            BytesRepr(content)
        );
    }
}

/// One line per request (capped), quoting what the client sent escaped and cut.
fn log_request(request: &Message, peer: &PeerAddr) {
    if request.is_json() {
        limited!(
            REQUEST_LINES,
            INFO,
            "Received request {} from {peer}",
            Escaped(&request.content)
        );
    } else {
        limited!(
            REQUEST_LINES,
            INFO,
            "Received binary request ({} bytes, {}) from {peer}",
            request.content.len(),
            Escaped::str(&request.content_type)
        );
    }
    limited!(
        REQUEST_LINES,
        DEBUG,
        "Request header from {peer}: byteorder {:?}, content-type {}, content-encoding {}, content-length {}",
        request.byteorder,
        Escaped::str(&request.content_type),
        Escaped::str(&request.content_encoding),
        request.content.len()
    );
    limited!(
        REQUEST_LINES,
        TRACE,
        "Request content from {peer}: {}",
        BytesRepr(&request.content[..request.content.len().min(crate::escape::LOG_VALUE_LIMIT)])
    );
}
