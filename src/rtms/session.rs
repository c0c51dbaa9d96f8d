//! One RTMS stream: its signaling and media sockets and their loop.
