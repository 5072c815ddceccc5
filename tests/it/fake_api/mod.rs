pub mod anthropic;
pub mod http;
pub mod openai;
