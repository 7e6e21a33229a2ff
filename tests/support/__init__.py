"""What tests share across files, written once: delivering events to handlers (`deliveries`), the one-line
error of `lnn` (`cli`), arrays as files (`arrays`) and a moto server with the stack deployed (`emulator`)."""
