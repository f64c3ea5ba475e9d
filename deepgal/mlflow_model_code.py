"""The file MLflow stores as the select stage's model ("models from code").

MLflow saves this file's text with the model and runs it when the model is loaded: it names the
class to instantiate, instead of a cloudpickled object that ``pickle`` would have to execute to
load (MLflow's own warning: unpickling may run arbitrary code). deepgal's source travels in the
model's ``code/`` folder, which MLflow puts on ``sys.path`` before running this file.
"""

from mlflow.models import set_model

from deepgal.mlflow_model import GalaxyClassifier

set_model(GalaxyClassifier())
