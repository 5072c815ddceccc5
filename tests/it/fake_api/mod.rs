pub mod anthropic;
pub mod chat;
pub mod conversation;
pub mod gemini;
pub mod http;
pub mod openai;
