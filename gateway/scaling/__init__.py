"""Workers by demand: scale to zero, start on the next call, more under load, all within a memory budget."""
