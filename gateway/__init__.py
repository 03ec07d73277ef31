"""HTTP gateway in front of TorchServe: validates requests, proxies them, shapes answers and errors."""
