import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "firmware"))
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")


import pytest  # noqa: E402

pytest_plugins = ["image_fixtures", "pgkit"]  # session fixtures (image tests; a PostgreSQL cluster), made once


@pytest.fixture
def mock_factory():
    """A fresh gpiozero MockFactory per test, so pins reserved by one test never leak into the next."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = saved
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
