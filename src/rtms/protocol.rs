//! RTMS wire messages. No IO.
