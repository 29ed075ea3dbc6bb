from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A nested group of settings; unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")
