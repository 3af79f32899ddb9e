"""Load scenarios: three Socket.IO servers under the same raw-frame load generator."""
