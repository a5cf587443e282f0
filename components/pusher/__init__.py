"""AtomicPusher: TFX's Pusher whose versions appear in the model directory only complete."""
