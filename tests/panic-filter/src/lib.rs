//! Panics on requests carrying `x-test-panic`: the deliberately failing request path the
//! recovery test needs, kept out of the product's filters so no production configuration can
//! carry a crash switch.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(PanicRoot));
}}

struct PanicRoot;

impl Context for PanicRoot {}

impl RootContext for PanicRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PanicFilter))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PanicFilter;

impl Context for PanicFilter {}

impl HttpContext for PanicFilter {
    #[allow(clippy::panic)]
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("x-test-panic").is_some() {
            panic!("deliberate panic requested by the recovery test");
        }
        Action::Continue
    }
}
