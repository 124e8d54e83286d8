"""What training, the service and deploy share: the data schema, the model directory's
manifest and the LiteRT runner. It imports none of them (tests/test_layers.py holds that),
so the serving image ships this package and the service, without training or deploy.
"""
