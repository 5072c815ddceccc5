pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod openai;
