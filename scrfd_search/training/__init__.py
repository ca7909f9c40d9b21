"""Training one candidate: device, data checks, the monitor hook, the Runner, the candidate run itself."""
