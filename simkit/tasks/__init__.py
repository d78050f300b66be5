"""What the papers' figure scripts run beyond a single training run.

``inversion.py``        Podlaski & Machens 2020 (Figs. 3-4): the regression, MNIST and autoencoder
                        tasks, every model trained on the same samples in the same order
``inversion_model.py``  their online models: forward pass, errors through a rule of
                        :mod:`simkit.rules.inversion`, updates, SSA re-stabilisation
``deferred.py``         online SGD's first-layer updates applied k samples at a time, exactly
``figure.py``           what every figure script shares: options, compute -> save -> plot
"""
