// Bundle size: an app that trains on ONNX files and exports ONNX.
import { createOnnxTrainer } from 'webtune/onnx';

const trainer = await createOnnxTrainer();
console.log(await trainer.status());
