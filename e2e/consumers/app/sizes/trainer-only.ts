// Bundle size: an app that trains safetensors models.
import { createTrainer } from 'webtune';

const trainer = await createTrainer();
console.log(await trainer.status());
