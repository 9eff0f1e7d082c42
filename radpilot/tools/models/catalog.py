"""Known weights: what radpilot can load, where it comes from, and how to check it.

Hashes: SAM's checkpoints carry the first hex digits of their sha256 in the file name (the
torch-hub convention) and are checked against that prefix; the other upstream files publish no
hash, so their sha256 is recorded when they are imported (trust on first use) and verified
against that record afterwards. Bundled starter weights are pinned in full.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from radpilot.core.findings import BOX_FINDINGS, NIH_FINDINGS

Family = Literal[
    "xrv-densenet",
    "xrv-pspnet",
    "sam",
    "medsam",
    "starter-classifier",
    "starter-anatomy",
    "starter-detector",
    "starter-view",
]

_XRV_RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
_XRV_LICENCE = (
    "Apache-2.0 (torchxrayvision); weights trained on public datasets whose own terms apply "
    "(e.g. MIMIC-CXR and CheXpert: research use under their data use agreements)"
)
_XRV_LABELS = [
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
    "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass",
    "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
]  # fmt: skip


class InputConvention(BaseModel):
    size: int
    scale: float = Field(description="Intensities [0, 1] map to [-scale, scale].")
    channels: int = 1


class KnownWeights(BaseModel):
    name: str
    family: Family
    architecture: str
    filename: str = Field(description="File name the library's real loader expects.")
    folder: str = Field(description="Sub-folder of the model dir the loader is pointed at.")
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    licence: str
    input: InputConvention
    labels: list[str]
    intended_use: str
    bundled: bool = False


def _xrv_densenet(short: str, file_stem: str, trained_on: str) -> KnownWeights:
    return KnownWeights(
        name=f"densenet121-res224-{short}",
        family="xrv-densenet",
        architecture="DenseNet-121 (torchxrayvision)",
        filename=f"{file_stem}-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        folder="xrv",
        url=f"{_XRV_RELEASE}{file_stem}-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        licence=_XRV_LICENCE,
        input=InputConvention(size=224, scale=1024),
        labels=_XRV_LABELS,
        intended_use="Findings classification on frontal chest radiographs; trained on "
        f"{trained_on}.",
    )


def _sam(variant: str, prefix: str) -> KnownWeights:
    return KnownWeights(
        name=f"sam-vit-{variant}",
        family="sam",
        architecture=f"Segment Anything ViT-{variant.upper()}",
        filename=f"sam_vit_{variant}_{prefix}.pth",
        folder="sam",
        url=f"https://dl.fbaipublicfiles.com/segment_anything/sam_vit_{variant}_{prefix}.pth",
        sha256_prefix=prefix,
        licence="Apache-2.0",
        input=InputConvention(size=1024, scale=1, channels=3),
        labels=[],
        intended_use="Promptable segmentation (box or point prompts); not medical-specific.",
    )


CATALOG: dict[str, KnownWeights] = {
    weights.name: weights
    for weights in [
        _xrv_densenet(
            "all",
            "nih-pc-chex-mimic_ch-google-openi-kaggle",
            "NIH, PadChest, CheXpert, MIMIC-CXR, Google, OpenI, RSNA",
        ),
        _xrv_densenet("nih", "nih", "NIH ChestX-ray14"),
        _xrv_densenet("pc", "pc", "PadChest"),
        _xrv_densenet("chex", "chex", "CheXpert"),
        _xrv_densenet("rsna", "kaggle", "RSNA Pneumonia (Kaggle)"),
        _xrv_densenet("mimic_nb", "mimic_nb", "MIMIC-CXR (NegBio labels)"),
        _xrv_densenet("mimic_ch", "mimic_ch", "MIMIC-CXR (CheXpert labels)"),
        KnownWeights(
            name="xrv-pspnet-chestx-det",
            family="xrv-pspnet",
            architecture="PSPNet (torchxrayvision, ChestX-Det)",
            filename="pspnet_chestxray_best_model_4.pth",
            folder="xrv",
            url=f"{_XRV_RELEASE}pspnet_chestxray_best_model_4.pth",
            licence=_XRV_LICENCE,
            input=InputConvention(size=512, scale=1024),
            labels=[
                "Left Clavicle",
                "Right Clavicle",
                "Left Scapula",
                "Right Scapula",
                "Left Lung",
                "Right Lung",
                "Left Hilus Pulmonis",
                "Right Hilus Pulmonis",
                "Heart",
                "Aorta",
                "Facies Diaphragmatica",
                "Mediastinum",
                "Weasand",
                "Spine",
            ],  # fmt: skip
            intended_use="Segmentation of 14 anatomical structures on frontal chest radiographs.",
        ),
        _sam("b", "01ec64"),
        _sam("l", "0b3195"),
        _sam("h", "4b8939"),
        KnownWeights(
            name="medsam-vit-b",
            family="medsam",
            architecture="MedSAM (SAM ViT-B fine-tuned on medical images)",
            filename="medsam_vit_b.pth",
            folder="sam",
            url="https://zenodo.org/records/10689643/files/medsam_vit_b.pth",
            licence="Apache-2.0",
            input=InputConvention(size=1024, scale=1, channels=3),
            labels=[],
            intended_use="Box-prompted segmentation of medical images.",
        ),
        KnownWeights(
            name="starter-classifier",
            family="starter-classifier",
            architecture="EfficientNet-Lite, variant named by the bundle (ImageNet init, "
            "fine-tuned here)",
            filename="model.safetensors",
            folder="bundled",
            url="bundled with the radpilot package",
            licence="see the model card: trained on NIH ChestX-ray14 (unrestricted use)",
            input=InputConvention(size=224, scale=1),
            labels=list(NIH_FINDINGS),
            intended_use="Offline default findings classifier; weaker than canonical weights.",
            bundled=True,
        ),
        KnownWeights(
            name="starter-anatomy",
            family="starter-anatomy",
            architecture="MONAI UNet 2-D, 6 levels (16-256 channels), 4 softmax classes, "
            "trained here",
            filename="model.safetensors",
            folder="bundled",
            url="bundled with the radpilot package",
            licence="NON-COMMERCIAL, research and education: trained on JSRT/SCR (research and "
            "education use), Wingspan (MIT) and COVID-19 image data collection images that "
            "include CC BY-NC-SA, with V7 Labs lung masks. See the model card",
            input=InputConvention(size=256, scale=1),
            labels=["heart", "right_lung", "left_lung"],
            intended_use="Offline default segmentation of the heart and each lung on adult "
            "frontal chest radiographs, for the cardiothoracic ratio; not for diagnosis.",
            bundled=True,
        ),
        KnownWeights(
            name="starter-detector",
            family="starter-detector",
            architecture="FCOS (torchvision) on the starter classifier's EfficientNet-Lite0, "
            "feature pyramid P3-P7, trained here on the NIH radiologist boxes",
            filename="model.safetensors",
            folder="bundled",
            url="bundled with the radpilot package",
            licence="see the model card: trained on NIH ChestX-ray14 (unrestricted use)",
            input=InputConvention(size=384, scale=1),
            labels=list(BOX_FINDINGS),
            intended_use="Boxes around 8 findings on frontal chest radiographs, for the "
            "findings where it localizes better than Grad-CAM; not for diagnosis.",
            bundled=True,
        ),
        KnownWeights(
            name="starter-view",
            family="starter-view",
            architecture="Small CNN (five stride-2 stages, about 0.37 M parameters), one AP "
            "logit, trained here from scratch on the NIH view labels",
            filename="model.safetensors",
            folder="bundled",
            url="bundled with the radpilot package",
            licence="see the model card: trained on NIH ChestX-ray14 (unrestricted use)",
            input=InputConvention(size=128, scale=1),
            labels=["PA", "AP"],
            intended_use="Estimates the projection (PA or AP) of a frontal chest radiograph "
            "whose file does not record it (PNG, JPEG, DICOM without ViewPosition); not for "
            "diagnosis.",
            bundled=True,
        ),
    ]
}
