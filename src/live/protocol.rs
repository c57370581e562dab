//! WebSocket messages, client to server and server to client (to be built).
