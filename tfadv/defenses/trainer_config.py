"""Serialising the trainers that attack a classifier in their train step (AdversarialTrainer,
TradesTrainer, MartTrainer): the classifier, the attack value, eps, seed and AWP size."""

import copy

import keras

from tfadv import attacks


def config_of(trainer, **own) -> dict:
    """The shared part of such a trainer's `get_config`, plus its own fields."""
    return {
        "classifier": keras.saving.serialize_keras_object(trainer.classifier),
        "attack": trainer.attack.to_config(),
        "eps": float(keras.ops.convert_to_numpy(trainer.eps)),
        "seed": trainer.seed,
        "awp_gamma": trainer.awp_size,
        **own,
    }


def from_config(cls, config):
    """`cls(classifier, attack, **the rest)` from a config written by `config_of`."""
    config = copy.deepcopy(config)  # deserializing consumes the nested dicts
    classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
    attack = attacks.Attack.from_config(config.pop("attack"))
    return cls(classifier, attack, **config)
