"""Pure settings: the key table, value readers, Deforum settings, schedules, presets and the clip
planner. No torch, no gradio."""
