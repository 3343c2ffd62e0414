"""Result images: the stores (files, S3) and the fleet-wide cleanup of old results."""
