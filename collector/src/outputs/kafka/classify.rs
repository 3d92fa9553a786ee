//! Which Kafka errors are worth retrying.
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode as Code},
    types::RDKafkaRespErr,
};

use crate::outputs::SinkError;

/// Errors that retrying the same batch with the same configuration cannot fix: the
/// batch is dead-lettered. Everything else (brokers down, timeouts, leader changes,
/// unknown topic, authentication that may be fixed by the operator) is retryable.
pub fn is_permanent(code: Code) -> bool {
    matches!(
        code,
        Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::MessageBatchTooLarge
            | Code::InvalidRecord
            | Code::BadMessage
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::InvalidConfig
            | Code::InvalidTopic
            | Code::InvalidArgument
            | Code::InvalidRequiredAcks
            | Code::UnsupportedForMessageFormat
            | Code::PolicyViolation
    )
}

/// The sink error for a Kafka error, with `what` saying what failed.
pub fn sink_error(what: &str, e: &KafkaError) -> SinkError {
    let msg = format!("kafka: {what}: {e}");
    match e.rdkafka_error_code() {
        Some(code) if is_permanent(code) => SinkError::Permanent(msg),
        _ => SinkError::Retryable(msg),
    }
}

/// The same for a broker response code (metadata).
pub fn resp_error(what: &str, e: RDKafkaRespErr) -> SinkError {
    let code = Code::from(e);
    let msg = format!("kafka: {what}: {code}");
    if is_permanent(code) {
        SinkError::Permanent(msg)
    } else {
        SinkError::Retryable(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let prod = |c| KafkaError::MessageProduction(c);
        for c in [
            Code::MessageSizeTooLarge,
            Code::TopicAuthorizationFailed,
            Code::InvalidConfig,
        ] {
            assert!(
                matches!(sink_error("x", &prod(c)), SinkError::Permanent(_)),
                "{c:?}"
            );
        }
        for c in [
            Code::MessageTimedOut,
            Code::AllBrokersDown,
            Code::NotLeaderForPartition,
            Code::UnknownTopicOrPartition,
            Code::QueueFull,
            Code::OutOfOrderSequenceNumber,
        ] {
            assert!(
                matches!(sink_error("x", &prod(c)), SinkError::Retryable(_)),
                "{c:?}"
            );
        }
        assert!(matches!(
            sink_error("x", &KafkaError::Canceled),
            SinkError::Retryable(_)
        ));
    }
}
