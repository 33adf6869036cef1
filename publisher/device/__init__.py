"""Device-side tools of the publisher: factory images, flashing, simulation."""
